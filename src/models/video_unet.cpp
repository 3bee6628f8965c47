// Loading and saving whichever video UNet a folder holds (models/video_unet.hpp).
#include "models/video_unet.hpp"

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/lora.hpp"
#include "models/unet3d.hpp"
#include "models/unet_motion.hpp"
#include "models/weights.hpp"

namespace mcm::models {
namespace fs = std::filesystem;

VideoUnet build_video_unet(const nlohmann::json& config, const fs::path& config_file, const nlohmann::json* adapter,
                           const fs::path& adapter_file) {
  if (adapter) return UnetMotion(UnetMotionConfig::from_unet2d(config, config_file, *adapter, adapter_file)).ptr();
  const std::string cls = config.value("_class_name", std::string("UNet3DConditionModel"));
  if (cls == "UNet3DConditionModel") return Unet3D(Unet3DConfig::from_json(config, config_file)).ptr();
  if (cls == "UNetMotionModel") return UnetMotion(UnetMotionConfig::from_json(config, config_file)).ptr();
  if (cls == "UNet2DConditionModel")
    throw ConfigError(cat(config_file.string(), ": a UNet2DConditionModel is an image UNet: give its motion adapter "
                                                "(models.teacher.motion_adapter) to make a UNetMotionModel of it"));
  throw ConfigError(cat(config_file.string(), ": _class_name ", cls,
                        " is not a video UNet mcm builds (UNet3DConditionModel, UNetMotionModel)"));
}

VideoUnet load_video_unet(const fs::path& folder, torch::ScalarType dtype, const fs::path& motion_adapter) {
  if (!motion_adapter.empty()) return load_unet_motion(folder, motion_adapter, dtype).ptr();
  auto unet = build_video_unet(read_config_json(folder), folder / "config.json");
  load_folder_weights(*unet, folder, dtype);
  return unet;
}

void save_video_unet(VideoUnetImpl& unet, const fs::path& folder, std::optional<torch::ScalarType> dtype) {
  fs::create_directories(folder);
  require<ConfigError>(!has_unmerged_lora(unet), "saving the UNet to ", folder,
                       ": it has unmerged LoRA adapters; merge_lora() first (or save_lora() for the adapters)");
  mcm::fs::write_atomic(folder / "config.json", unet.config_json().dump(2) + "\n");
  write_tensors(folder / "diffusion_pytorch_model.safetensors", without_lora(state_dict(unet)), dtype, {{"format", "pt"}});
}

}  // namespace mcm::models
