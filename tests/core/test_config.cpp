// Config: strict binding, overrides, type errors with locations, cross-field rules.
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "../test_util.hpp"

using namespace mcm;
using mcm::test::expect_error;

TEST(Config, DefaultsAndFileAndOverridePrecedence) {
  auto d = test::scratch();
  test::write_text(d / "a.toml", "[prep]\nframes = 4\nstride = 3\n");
  test::write_text(d / "b.toml", "[prep]\nstride = 2\n");
  auto c = config::load({d / "a.toml", d / "b.toml"}, {"prep.frames=5", "run.dir=runs/x y"});
  EXPECT_EQ(c.prep.frames, 5);  // --set beats files
  EXPECT_EQ(c.prep.stride, 2);  // overlay beats base
  EXPECT_EQ(c.run.dir, "runs/x y");  // bare value taken as a string
  EXPECT_EQ(c.synth.videos, 48);  // documented default
  EXPECT_EQ(c.sources.size(), 4u);
}

TEST(Config, UnknownKeySuggestsNearest) {
  auto d = test::scratch();
  test::write_text(d / "c.toml", "[prep]\nframe = 4\n[synth]\nvidoes = 3\n");
  expect_error<ConfigError>([&] { config::load({d / "c.toml"}, {}); },
                            {"c.toml:2:", "\"prep.frame\"", "did you mean \"prep.frames\"", "\"synth.vidoes\"", "synth.videos"});
}

TEST(Config, TypeErrorNamesFileLineColumn) {
  auto d = test::scratch();
  test::write_text(d / "c.toml", "[run]\nseed = 1\n\n[prep]\nframes = \"eight\"\n");
  expect_error<ConfigError>([&] { config::load({d / "c.toml"}, {}); }, {"c.toml:5:", "prep.frames", "expected integer, got string"});
  expect_error<ConfigError>([&] { config::load({d / "c.toml"}, {"prep.frames=x"}); }, {"--set prep.frames=x", "expected integer"});
}

TEST(Config, SyntaxErrorAndMissingFile) {
  auto d = test::scratch();
  test::write_text(d / "bad.toml", "[run\nseed = 1\n");
  expect_error<ConfigError>([&] { config::load({d / "bad.toml"}, {}); }, {"bad.toml:1:", "TOML syntax error"});
  expect_error<ConfigError>([&] { config::load({d / "none.toml"}, {}); }, {"none.toml", "not found"});
  expect_error<ConfigError>([&] { config::load({}, {"novalue"}); }, {"expected key=value"});
}

TEST(Config, CrossFieldRulesExplainNumbers) {
  expect_error<ConfigError>([&] { config::load({}, {"prep.frames=16", "prep.stride=8"}); },
                            {"(16-1)*8+1 = 121", "synth.frames = 24"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.resolution=30"}); }, {"prep.resolution = 30", "factor = 4", "remainder 2"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.crop=\"zoom\""}); }, {"prep.crop", "center, random_resized"});
  expect_error<ConfigError>([&] { config::load({}, {"synth.broken=[\"nope\"]"}); }, {"synth.broken", "corrupt_mp4"});
  // The synth-length rule does not apply to external shards.
  EXPECT_NO_THROW(config::load({}, {"prep.frames=16", "prep.stride=8", "prep.videos=/data/shards"}));
}

TEST(Config, TomlRoundTripAndHashes) {
  auto d = test::scratch();
  auto c = config::load({}, {"synth.broken=[\"short_clip\"]", "synth.blur=2"});
  test::write_text(d / "resolved.toml", c.to_toml());
  auto c2 = config::load({d / "resolved.toml"}, {});
  EXPECT_EQ(c.to_json(), c2.to_json());
  EXPECT_EQ(c.hash(), c2.hash());
  auto c3 = config::load({}, {"synth.blur=3"});
  EXPECT_NE(c.hash(), c3.hash());
  EXPECT_EQ(c.hash({"prep"}), c3.hash({"prep"}));  // a synth change leaves prep's hash alone
}

TEST(Config, EditDistance) {
  EXPECT_EQ(config::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(config::edit_distance("", "abc"), 3u);
}
