// The run configuration: one struct per TOML section, one `///` line per field. TOML files
// (base, then overlays) and `--set key=value` overrides are merged, bound strictly (unknown
// keys and wrong types are errors with file:line:column) and checked by one validate().
// Core owns the shared sections ([run], [models.*]); each stage owns its own section, declared
// and validated in the stage's folder and registered with MCM_CONFIG_SECTION (Note [sections]).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcm::config {

struct RunSection {
  std::string dir = "runs/tiny";  ///< run folder: data, prep shards, checkpoints, manifest.json
  int64_t seed = 1234;            ///< master seed; every stage derives its streams from it
  int64_t threads = 0;            ///< torch/decoder threads per rank; 0 = cores / ranks on the node
  std::string log_level = "info"; ///< debug, info, warn or error
};

struct AutoencoderSection {
  std::string kind = "pixel_shuffle";  ///< "pixel_shuffle" (exact, embedded default) or "autoencoder_kl"
  int64_t factor = 4;             ///< pixel_shuffle: spatial down-sampling factor
  double scaling_factor = 1.0;    ///< pixel_shuffle: latents = encode(x) * scaling_factor
  std::string path = "";          ///< autoencoder_kl: a diffusers `vae/` folder (its config gives the scaling)
  std::string mode = "mean";      ///< autoencoder_kl: "mean" of the posterior, or "sample" (seeded per clip)
};

struct TextEncoderSection {
  std::string kind = "word";      ///< "word" (frozen seeded embedding over synth's vocabulary) or "clip"
  std::string vocab = "";         ///< word: vocabulary file ("" = <run.dir>/data/vocab.txt)
  int64_t max_length = 16;        ///< word: tokens per caption, with padding and truncation
  int64_t dim = 64;               ///< word: embedding width
  int64_t seed = 7;               ///< word: seed of the frozen weights
  std::string path = "";          ///< clip: a transformers `text_encoder/` folder
  std::string tokenizer = "";     ///< clip: tokenizer folder ("" = the `tokenizer/` beside `path`)
};

struct TeacherModelSection {
  /// "unet3d": UNet3DConditionModel (ModelScopeT2V); "unet_motion": UNetMotionModel (AnimateDiff:
  /// SD1.5 + a motion adapter). The embedded teacher is built and pretrained as this kind too.
  std::string kind = "unet3d";
  /// "" = the embedded default (pretrained by `mcm teacher` into <run.dir>/teacher/unet); else a
  /// diffusers folder (ModelScope's `unet/`, a saved UNetMotionModel, or SD1.5's `unet/` with
  /// motion_adapter), which `mcm teacher` checks and records only
  std::string path = "";
  /// unet_motion with an SD1.5 `unet/` in path: the MotionAdapter folder (e.g. v1-5-2) combined
  /// with it as UNetMotionModel.from_unet2d does; "" when path is a UNetMotionModel folder
  std::string motion_adapter = "";
  /// "" = the scheduler/ config beside the UNet (SD1.5, ModelScope: scaled_linear); "linear" or
  /// "scaled_linear" overrides it for distillation and sampling alike. AnimateDiff trains with
  /// scaled_linear and its released demo samples with linear betas: README "AnimateDiff".
  std::string beta_schedule = "";
};

struct ModelsSection {
  AutoencoderSection autoencoder;
  TextEncoderSection text_encoder;
  TeacherModelSection teacher;
};

/// One call per field of a section, with the key relative to the section ("frames").
class FieldVisitor {
 public:
  virtual ~FieldVisitor() = default;
  virtual void operator()(const std::string& key, std::string& v) = 0;
  virtual void operator()(const std::string& key, int64_t& v) = 0;
  virtual void operator()(const std::string& key, double& v) = 0;
  virtual void operator()(const std::string& key, bool& v) = 0;
  virtual void operator()(const std::string& key, std::vector<std::string>& v) = 0;
  virtual void operator()(const std::string& key, std::vector<int64_t>& v) = 0;
};

struct Config;

/// A registered section, type-erased. Implemented by Section<S> for a struct S with
/// `static constexpr const char* kName`, `void visit(FieldVisitor&)` listing every field once,
/// and `void validate(const Config&) const` (its range and cross-field rules).
class SectionBase {
 public:
  virtual ~SectionBase() = default;
  virtual void visit(FieldVisitor& v) = 0;
  virtual void validate(const Config& cfg) const = 0;
  virtual std::unique_ptr<SectionBase> clone() const = 0;
  /// True for sections that only say how stages are launched (`static constexpr bool kLaunchOnly
  /// = true` in S: [pipeline], [slurm]); Config::hash() leaves them out.
  virtual bool launch_only() const = 0;
};

template <class S>
class Section final : public SectionBase {
 public:
  S value;
  void visit(FieldVisitor& v) override { value.visit(v); }
  void validate(const Config& cfg) const override { value.validate(cfg); }
  std::unique_ptr<SectionBase> clone() const override { return std::make_unique<Section<S>>(*this); }
  bool launch_only() const override {
    if constexpr (requires { S::kLaunchOnly; }) return S::kLaunchOnly;
    else return false;
  }
};

/// Adds a section to every Config made afterwards. Called at static-initialisation time by
/// MCM_CONFIG_SECTION; a name registered twice is a programming error (std::logic_error).
void register_section(const std::string& name, std::function<std::unique_ptr<SectionBase>()> make);
/// Names of the registered sections, sorted.
std::vector<std::string> registered_sections();

// Note [sections]: a stage declares `struct PrepSection { static constexpr const char* kName =
// "prep"; ... }` in its own folder and registers it in the .cpp that defines its run_<stage>
// (so the registration is linked whenever the stage is): MCM_CONFIG_SECTION(PrepSection).
// Core never names a stage's section; programs and tests know the sections they link.
#define MCM_CONFIG_SECTION(S)                                                                        \
  static const bool mcm_config_section_registered_##S = [] {                                         \
    ::mcm::config::register_section(S::kName, [] { return std::make_unique<::mcm::config::Section<S>>(); }); \
    return true;                                                                                     \
  }()

struct Config {
  RunSection run;
  ModelsSection models;
  std::vector<std::string> sources;  ///< files and --set overrides it came from, in order
  /// This process's share of a stage's work: part `index` of `count` (`mcm prep --part I/N`, one
  /// task of a Slurm job array). How the work is launched, like the world size: not a key of the
  /// configuration and not in its hash, so every part's record has the same config hash.
  struct Part {
    int64_t index = 0, count = 1;
  } part;

  /// Every registered section, with its documented defaults.
  Config();
  Config(const Config& o);
  Config& operator=(const Config& o);
  Config(Config&&) noexcept = default;
  Config& operator=(Config&&) noexcept = default;

  /// A stage's section; ConfigError when this program did not register S.
  template <class S>
  const S& section() const { return dynamic_cast<const Section<S>&>(section_base(S::kName)).value; }
  template <class S>
  S& section() { return dynamic_cast<Section<S>&>(const_cast<SectionBase&>(section_base(S::kName))).value; }
  /// The section, or nullptr when not registered (for cross-section rules).
  template <class S>
  const S* find() const {
    auto it = sections_.find(S::kName);
    return it == sections_.end() ? nullptr : &dynamic_cast<const Section<S>&>(*it->second).value;
  }

  /// The resolved configuration as JSON (for the manifest) and as TOML (for --dry-run).
  nlohmann::json to_json() const;
  std::string to_toml() const;
  /// Hash of the whole config but its launch-only sections (what can change a stage's outputs:
  /// resubmitting with another partition or rank count leaves it as it was), or of the listed
  /// top-level sections / dotted keys only (an unknown one is a ConfigError).
  std::string hash(const std::vector<std::string>& parts = {}) const;

  /// The registered sections by name (for walking every field).
  const std::map<std::string, std::unique_ptr<SectionBase>>& sections() const { return sections_; }

 private:
  const SectionBase& section_base(const std::string& name) const;
  std::map<std::string, std::unique_ptr<SectionBase>> sections_;
};

/// Loads files in order (later ones overlay earlier ones), applies `key=value` overrides,
/// binds strictly and validates. Throws ConfigError naming file:line:column and key.
Config load(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& overrides);

/// Cross-field checks of the core sections, then each section's validate(); throws
/// ConfigError explaining the numbers.
void validate(const Config& cfg);

/// Helpers for sections' validate(): a positive value, one of a set of names.
void require_positive(int64_t v, const std::string& key);
void require_one_of(const std::string& v, const std::string& key, const std::vector<std::string>& allowed);

/// Edit distance, used to suggest the nearest known key.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace mcm::config
