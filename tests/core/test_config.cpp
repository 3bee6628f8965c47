// Config: strict binding, overrides, type errors with locations, cross-field rules, and sections
// registered by their owner (here a test section standing in for a stage's).
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "../test_util.hpp"

using namespace mcm;
using mcm::test::expect_error;

namespace {
// What a stage does in its own folder: declare, list and validate its section, register it.
struct DemoSection {
  static constexpr const char* kName = "demo";
  int64_t frames = 8;
  int64_t stride = 2;
  double blur = 1.0;
  std::string crop = "center";
  bool flag = true;
  std::vector<std::string> broken = {};
  void visit(config::FieldVisitor& v) {
    v("frames", frames);
    v("stride", stride);
    v("blur", blur);
    v("crop", crop);
    v("flag", flag);
    v("broken", broken);
  }
  void validate(const config::Config& cfg) const {
    config::require_positive(frames, "demo.frames");
    config::require_one_of(crop, "demo.crop", {"center", "random_resized"});
    require<ConfigError>(frames * stride <= 24 || cfg.run.seed == 0, "demo.frames x demo.stride = ", frames * stride,
                         " exceeds 24");
  }
};
MCM_CONFIG_SECTION(DemoSection);

// A section that only says how stages are launched, like [pipeline] and [slurm].
struct LaunchSection {
  static constexpr const char* kName = "launch";
  static constexpr bool kLaunchOnly = true;
  int64_t nodes = 1;
  void visit(config::FieldVisitor& v) { v("nodes", nodes); }
  void validate(const config::Config&) const {}
};
MCM_CONFIG_SECTION(LaunchSection);

// A stage section this binary does not link (never registered).
struct UnlinkedSection {
  static constexpr const char* kName = "prep";
  void visit(config::FieldVisitor&) {}
  void validate(const config::Config&) const {}
};
}  // namespace

TEST(Config, DefaultsAndFileAndOverridePrecedence) {
  auto d = test::scratch();
  test::write_text(d / "a.toml", "[demo]\nframes = 4\nstride = 3\n");
  test::write_text(d / "b.toml", "[demo]\nstride = 2\n");
  auto c = config::load({d / "a.toml", d / "b.toml"}, {"demo.frames=5", "run.dir=runs/x y"});
  EXPECT_EQ(c.section<DemoSection>().frames, 5);  // --set beats files
  EXPECT_EQ(c.section<DemoSection>().stride, 2);  // overlay beats base
  EXPECT_EQ(c.run.dir, "runs/x y");  // bare value taken as a string
  EXPECT_EQ(c.section<DemoSection>().blur, 1.0);  // documented default
  EXPECT_EQ(c.models.text_encoder.max_length, 16);
  EXPECT_EQ(c.sources.size(), 4u);
}

TEST(Config, SectionsAreRegisteredByTheirOwner) {
  auto names = config::registered_sections();
  EXPECT_NE(std::find(names.begin(), names.end(), "demo"), names.end());
  // This test binary links no stage: their sections are not part of it, and say so.
  config::Config c;
  expect_error<ConfigError>([&] { (void)c.section<UnlinkedSection>(); }, {"section [prep] is not part of this program", "demo"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.frames=3"}); }, {"\"prep.frames\"", "unknown key"});
  // Copies are deep.
  config::Config a = config::load({}, {"demo.frames=3"});
  config::Config b = a;
  b.section<DemoSection>().frames = 4;
  EXPECT_EQ(a.section<DemoSection>().frames, 3);
  EXPECT_THROW(config::register_section("demo", [] { return std::make_unique<config::Section<DemoSection>>(); }),
               std::logic_error);
}

TEST(Config, UnknownKeySuggestsNearest) {
  auto d = test::scratch();
  test::write_text(d / "c.toml", "[demo]\nframe = 4\n[run]\nsed = 3\n");
  expect_error<ConfigError>([&] { config::load({d / "c.toml"}, {}); },
                            {"c.toml:2:", "\"demo.frame\"", "did you mean \"demo.frames\"", "\"run.sed\"", "run.seed"});
}

TEST(Config, TypeErrorNamesFileLineColumn) {
  auto d = test::scratch();
  test::write_text(d / "c.toml", "[run]\nseed = 1\n\n[demo]\nframes = \"eight\"\n");
  expect_error<ConfigError>([&] { config::load({d / "c.toml"}, {}); }, {"c.toml:5:", "demo.frames", "expected integer, got string"});
  expect_error<ConfigError>([&] { config::load({d / "c.toml"}, {"demo.frames=x"}); }, {"--set demo.frames=x", "expected integer"});
  expect_error<ConfigError>([&] { config::load({}, {"demo.flag=1"}); }, {"demo.flag", "expected boolean"});
  expect_error<ConfigError>([&] { config::load({}, {"demo.broken=[1]"}); }, {"demo.broken", "array of strings"});
}

TEST(Config, SyntaxErrorAndMissingFile) {
  auto d = test::scratch();
  test::write_text(d / "bad.toml", "[run\nseed = 1\n");
  expect_error<ConfigError>([&] { config::load({d / "bad.toml"}, {}); }, {"bad.toml:1:", "TOML syntax error"});
  expect_error<ConfigError>([&] { config::load({d / "none.toml"}, {}); }, {"none.toml", "not found"});
  expect_error<ConfigError>([&] { config::load({}, {"novalue"}); }, {"expected key=value"});
}

TEST(Config, RulesOfCoreAndSectionsExplainNumbers) {
  expect_error<ConfigError>([&] { config::load({}, {"demo.frames=16", "demo.stride=8"}); }, {"= 128", "exceeds 24"});
  expect_error<ConfigError>([&] { config::load({}, {"demo.crop=\"zoom\""}); }, {"demo.crop", "center, random_resized"});
  expect_error<ConfigError>([&] { config::load({}, {"demo.frames=0"}); }, {"demo.frames = 0", "> 0"});
  expect_error<ConfigError>([&] { config::load({}, {"run.log_level=\"loud\""}); }, {"run.log_level", "debug"});
  expect_error<ConfigError>([&] { config::load({}, {"models.text_encoder.max_length=1"}); }, {"max_length = 1"});
  expect_error<ConfigError>([&] { config::load({}, {"models.autoencoder.kind=\"autoencoder_kl\""}); },
                            {"models.autoencoder.path: required"});
}

TEST(Config, TomlRoundTripAndHashes) {
  auto d = test::scratch();
  auto c = config::load({}, {"demo.broken=[\"short_clip\"]", "demo.blur=2"});
  test::write_text(d / "resolved.toml", c.to_toml());
  auto c2 = config::load({d / "resolved.toml"}, {});
  EXPECT_EQ(c.to_json(), c2.to_json());
  EXPECT_EQ(c.hash(), c2.hash());
  auto c3 = config::load({}, {"demo.blur=3"});
  EXPECT_NE(c.hash(), c3.hash());
  EXPECT_EQ(c.hash({"models"}), c3.hash({"models"}));  // a demo change leaves the models' hash alone
  EXPECT_NE(c.hash({"demo"}), c3.hash({"demo"}));
}

TEST(Config, HashOfUnknownKeyIsAnError) {
  auto c = config::load({}, {});
  EXPECT_NO_THROW(c.hash({"run.seed", "models", "models.autoencoder.kind"}));
  EXPECT_NE(c.hash({"run.seed"}), c.hash({"run.threads"}));
  // A misspelt key must not hash as null (it would stop guarding the outputs): it is named.
  expect_error<ConfigError>([&] { c.hash({"run.seed", "run.sed"}); },
                            {"unknown configuration key \"run.sed\"", "did you mean \"run.seed\""});
  expect_error<ConfigError>([&] { c.hash({"nosection"}); }, {"\"nosection\""});
  expect_error<ConfigError>([&] { c.hash({"run.seed.x"}); }, {"\"run.seed.x\""});  // below a leaf
  expect_error<ConfigError>([&] { c.hash({""}); }, {"unknown configuration key \"\""});
}

TEST(Config, EditDistance) {
  EXPECT_EQ(config::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(config::edit_distance("", "abc"), 3u);
}

TEST(Config, LaunchOnlySectionsStayOutOfTheHash) {
  auto a = config::load({}, {});
  auto b = config::load({}, {"launch.nodes=64"});
  EXPECT_EQ(b.section<LaunchSection>().nodes, 64);
  EXPECT_EQ(a.hash(), b.hash());  // resubmitting on 64 nodes leaves finished stages finished
  EXPECT_NE(a.hash({"launch"}), b.hash({"launch"}));  // named explicitly, it is hashed
  EXPECT_NE(a.hash(), config::load({}, {"demo.frames=4"}).hash());
  auto c = b;
  c.part = {2, 5};  // a job array task's share: not configuration
  EXPECT_EQ(c.hash(), a.hash());
  EXPECT_EQ(c.part.count, 5);
}
