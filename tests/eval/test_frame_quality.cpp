// The frame-quality rules by construction: synth's own renderer with and without its watermark,
// at the rendered size and box-downscaled as prep does for the tiny run, over many scenes (shapes
// anywhere, both backgrounds). The watermark is found on nearly every stamped frame and nearly no
// clean one; blur lowers sharpness. The stats add up and round-trip through JSON.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "eval/frame_quality.hpp"
#include "world/synth_world.hpp"

using namespace mcm;

namespace {
// Frame t of scene i rendered at `size` (supersampled like synth's videos), degraded by `d`, then
// averaged down by `factor` in each direction.
std::vector<uint8_t> frame(int i, int t, int size, int factor, synth::Degradation d) {
  auto s = synth::draw_scene(rng::key(11, "frame_quality", static_cast<uint64_t>(i), "scene"));
  std::vector<uint8_t> big(static_cast<size_t>(size) * size * 3);
  synth::render_frame(s, t, size, size, 2, big.data());
  d.noise_key = rng::key(11, "frame_quality", static_cast<uint64_t>(i), "noise");
  synth::degrade(big.data(), size, size, d, t);
  const int small = size / factor;
  std::vector<uint8_t> out(static_cast<size_t>(small) * small * 3);
  for (int y = 0; y < small; ++y)
    for (int x = 0; x < small; ++x)
      for (int c = 0; c < 3; ++c) {
        double acc = 0;
        for (int dy = 0; dy < factor; ++dy)
          for (int dx = 0; dx < factor; ++dx) acc += big[((static_cast<size_t>(y) * factor + dy) * size + x * factor + dx) * 3 + c];
        out[(static_cast<size_t>(y) * small + x) * 3 + c] = static_cast<uint8_t>(acc / (factor * factor) + 0.5);
      }
  return out;
}

eval::FrameQualityStats rate(int size, int factor, const synth::Degradation& d) {
  eval::FrameQualityStats s;
  for (int i = 0; i < 200; ++i) {
    auto f = frame(i, i % 8, size, factor, d);
    s.add(eval::analyse_frame(f.data(), size / factor, size / factor));
  }
  return s;
}
}  // namespace

TEST(FrameQuality, FindsSynthsWatermarkAndNotOnCleanFrames) {
  const synth::Degradation video{1.0, 6.0, true, {}}, still{0.0, 0.0, false, {}};
  for (int factor : {1, 4}) {
    auto marked = rate(64, factor, video), clean = rate(64, factor, still);
    std::printf("%dx%d: watermark found on %.3f of stamped frames, %.3f of clean ones\n", 64 / factor, 64 / factor,
                marked.watermark_rate(), clean.watermark_rate());
    EXPECT_GE(marked.watermark_rate(), 0.9) << 64 / factor;
    EXPECT_LE(clean.watermark_rate(), 0.1) << 64 / factor;
  }
}

TEST(FrameQuality, BlurLowersSharpness) {
  const synth::Degradation blurred{2.0, 0.0, false, {}}, clean{0.0, 0.0, false, {}};
  EXPECT_LT(rate(64, 1, blurred).sharpness(), 0.5 * rate(64, 1, clean).sharpness());
}

TEST(FrameQuality, StatsMergeAndRoundTrip) {
  eval::FrameQualityStats a, b;
  a.add({true, 50, 60, 10});
  a.add({false, 0, 60, 20});
  b.add({true, 40, 60, 30});
  a.merge(b);
  EXPECT_EQ(a.frames, 3);
  EXPECT_EQ(a.watermarked, 2);
  EXPECT_DOUBLE_EQ(a.sharpness(), 20);
  auto c = eval::FrameQualityStats::from_json(a.to_json());
  EXPECT_EQ(c.frames, 3);
  EXPECT_DOUBLE_EQ(c.watermark_rate(), 2.0 / 3.0);
  std::vector<uint8_t> tiny(4 * 4 * 3, 0);
  EXPECT_THROW(eval::analyse_frame(tiny.data(), 4, 4), DataError);
}
