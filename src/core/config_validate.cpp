// validate(): the range and cross-field rules of the core sections, then each registered
// section's own validate(). Messages explain the numbers.
#include <set>

#include "core/config.hpp"
#include "core/error.hpp"

namespace mcm::config {

void require_positive(int64_t v, const std::string& key) {
  require<ConfigError>(v > 0, key, " = ", v, ": must be > 0");
}

void require_one_of(const std::string& v, const std::string& key, const std::vector<std::string>& allowed) {
  for (auto& a : allowed)
    if (a == v) return;
  std::string list;
  for (auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw ConfigError(cat(key, " = \"", v, "\": expected one of ", list));
}

void validate(const Config& c) {
  require<ConfigError>(!c.run.dir.empty(), "run.dir: must not be empty");
  require<ConfigError>(c.run.threads >= 0 && c.run.threads <= 1024, "run.threads = ", c.run.threads,
                       ": must be in 0..1024 (0 = automatic)");
  require_one_of(c.run.log_level, "run.log_level", {"debug", "error", "info", "warn"});

  const auto& ae = c.models.autoencoder;
  require_one_of(ae.kind, "models.autoencoder.kind", {"autoencoder_kl", "pixel_shuffle"});
  if (ae.kind == "pixel_shuffle") {
    require_positive(ae.factor, "models.autoencoder.factor");
    require<ConfigError>(ae.scaling_factor > 0, "models.autoencoder.scaling_factor must be > 0");
  } else {
    // The down-sampling factor comes from the VAE's config.json; the stages that encode check
    // their resolution against it when they load the model.
    require<ConfigError>(!ae.path.empty(), "models.autoencoder.path: required for kind = \"autoencoder_kl\" "
                         "(a diffusers vae/ folder)");
    require_one_of(ae.mode, "models.autoencoder.mode", {"mean", "sample"});
  }

  const auto& te = c.models.text_encoder;
  require_one_of(te.kind, "models.text_encoder.kind", {"clip", "word"});
  require<ConfigError>(te.kind != "clip" || !te.path.empty(),
                       "models.text_encoder.path: required for kind = \"clip\" (a transformers text_encoder/ folder)");
  require<ConfigError>(te.max_length >= 2, "models.text_encoder.max_length = ", te.max_length,
                       ": needs room for the begin and end tokens (>= 2)");
  require_positive(te.dim, "models.text_encoder.dim");

  const auto& tm = c.models.teacher;
  require_one_of(tm.kind, "models.teacher.kind", {"unet3d", "unet_motion"});
  require<ConfigError>(tm.motion_adapter.empty() || (tm.kind == "unet_motion" && !tm.path.empty()),
                       "models.teacher.motion_adapter: only with kind = \"unet_motion\" and path = an SD1.5 unet/ folder");
  if (!tm.beta_schedule.empty())
    require_one_of(tm.beta_schedule, "models.teacher.beta_schedule", {"linear", "scaled_linear"});

  for (auto& [name, section] : c.sections()) section->validate(c);
}

}  // namespace mcm::config
