// The stages' own config sections and the stage table, as the `mcm` binary links them.
#include <algorithm>

#include "core/config.hpp"
#include "core/error.hpp"
#include "data_prep/prep_config.hpp"
#include "data_prep/synth_config.hpp"
#include "stages/stage_table.hpp"
#include "../test_util.hpp"

using namespace mcm;
using mcm::test::expect_error;

TEST(StageTable, StagesRegisterThemselvesInPipelineOrder) {
  auto table = stages::stage_table();
  ASSERT_GE(table.size(), 2u);
  EXPECT_EQ(table[0].name, "synth");
  EXPECT_EQ(table[1].name, "prep");
  EXPECT_TRUE(std::is_sorted(table.begin(), table.end(), [](auto& a, auto& b) { return a.order < b.order; }));
  ASSERT_NE(stages::find_stage("prep"), nullptr);
  EXPECT_NE(stages::find_stage("prep")->run, nullptr);
  EXPECT_EQ(stages::find_stage("nope"), nullptr);
  EXPECT_THROW(stages::register_stage({"prep", 99, nullptr, ""}), std::logic_error);
}

TEST(StageConfig, DefaultsAndOverrides) {
  auto c = config::load({}, {"prep.frames=5", "synth.videos=7", "synth.video_shards=7"});
  EXPECT_EQ(c.section<stages::PrepSection>().frames, 5);
  EXPECT_EQ(c.section<stages::PrepSection>().stride, 2);
  EXPECT_EQ(c.section<stages::SynthSection>().videos, 7);
  EXPECT_EQ(c.section<stages::PrepSection>().clips_per_video, 1);
  expect_error<ConfigError>([&] { config::load({}, {"prep.frame=3"}); }, {"did you mean \"prep.frames\""});
}

TEST(StageConfig, CrossFieldRulesExplainNumbers) {
  // MCM's window rule: a video needs frames x stride source frames.
  expect_error<ConfigError>([&] { config::load({}, {"prep.frames=16", "prep.stride=8"}); },
                            {"frames x stride = 128", "synth.frames = 24"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.min_frames=30"}); }, {"needs videos of 30 frames", "synth.frames = 24"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.dtype=\"half\""}); }, {"prep.dtype", "bfloat16"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.clips_per_video=0"}); }, {"prep.clips_per_video = 0"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.max_failed_shards=-1"}); }, {"prep.max_failed_shards = -1"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.resolution=30"}); }, {"prep.resolution = 30", "factor = 4", "remainder 2"});
  expect_error<ConfigError>([&] { config::load({}, {"prep.crop=\"zoom\""}); }, {"prep.crop", "center, random_resized"});
  expect_error<ConfigError>([&] { config::load({}, {"synth.broken=[\"nope\"]"}); }, {"synth.broken", "corrupt_mp4"});
  expect_error<ConfigError>([&] { config::load({}, {"synth.video_shards=99"}); }, {"synth.video_shards = 99", "exceeds"});
  // The synth-length rule does not apply to external shards.
  EXPECT_NO_THROW(config::load({}, {"prep.frames=16", "prep.stride=8", "prep.videos=/data/shards"}));
}

TEST(StageConfig, HashSeparatesSections) {
  auto a = config::load({}, {"synth.blur=2"}), b = config::load({}, {"synth.blur=3"});
  EXPECT_EQ(a.hash({"prep"}), b.hash({"prep"}));  // a synth change leaves prep's hash alone
  EXPECT_NE(a.hash({"synth"}), b.hash({"synth"}));
  EXPECT_NE(a.hash(), b.hash());
  expect_error<ConfigError>([&] { a.hash({"prep.fram"}); }, {"did you mean \"prep.frames\""});
}
