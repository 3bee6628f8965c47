// The report's raster plots: tick placement and labels, a plot whose axes, series colours and
// legend land where they should, and PNG bytes that FFmpeg's decoder reads back pixel for pixel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "io/media_decode.hpp"
#include "report/plot.hpp"

using namespace mcm;

TEST(Plot, NiceTicksAndLabels) {
  EXPECT_EQ(report::nice_ticks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  auto t = report::nice_ticks(0.37, 2.61, 6);
  ASSERT_GE(t.size(), 4u);
  EXPECT_GE(t.front(), 0.37);
  EXPECT_LE(t.back(), 2.61);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 0.5, 1e-12);
  EXPECT_EQ(report::tick_label(0), "0");
  EXPECT_EQ(report::tick_label(2.5), "2.5");
  EXPECT_EQ(report::tick_label(1229), "1229");
  EXPECT_EQ(report::tick_label(1.5e-5), "1.5e-05");
  EXPECT_EQ(report::nice_ticks(3, 3).size(), 1u);
}

namespace {
bool has_colour(const report::Canvas& c, report::Colour want, int x0, int x1) {
  for (int y = 0; y < c.height(); ++y)
    for (int x = x0; x < x1; ++x) {
      const uint8_t* p = &c.rgb()[(static_cast<size_t>(y) * c.width() + x) * 3];
      if (p[0] == want.r && p[1] == want.g && p[2] == want.b) return true;
    }
  return false;
}
}  // namespace

TEST(Plot, LinePlotDrawsSeriesAxesAndLegendAndRoundTripsAsPng) {
  report::PlotOptions o;
  o.title = "FVD";
  o.x_label = "SAMPLING STEPS";
  o.log2_x = true;
  o.width = 500;
  o.height = 300;
  std::vector<report::Series> s{{"MCM", {1, 2, 4, 8}, {0.5, 0.6, 0.9, 1.0}},
                                {"DDIM", {1, 2, 4, 8, 50}, {2.5, 0.8, 0.45, NAN, 0.43}}};
  auto c = report::line_plot(s, o);
  ASSERT_EQ(c.width(), 500);
  ASSERT_EQ(c.height(), 300);
  // Both series' colours inside the axes, and again in the legend right of them.
  const int legend_x = 500 - 16 - (report::Canvas::text_width("DDIM") + 30);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_TRUE(has_colour(c, report::palette(k), 72, legend_x)) << k;
    EXPECT_TRUE(has_colour(c, report::palette(k), legend_x, 500)) << k;
  }
  // The x axis is a black line along the bottom of the axes.
  const int axis_y = 300 - 46;
  for (int x = 80; x < 300; x += 20) {
    const uint8_t* p = &c.rgb()[(static_cast<size_t>(axis_y) * 500 + x) * 3];
    EXPECT_EQ(p[0] + p[1] + p[2], 0) << x;
  }
  const auto png = c.png();
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(std::memcmp(png.data(), "\x89PNG\r\n\x1a\n", 8), 0);
  io::DecodeOptions d;
  d.width = 500;
  d.height = 300;
  d.start = 0;
  auto back = io::decode_clip(png.data(), png.size(), "plot.png", d);  // a still decodes as a 1-frame video
  ASSERT_EQ(back.width, 500);
  ASSERT_EQ(back.height, 300);
  EXPECT_EQ(back.rgb, c.rgb());
  // No data: an empty axis that says so, not an error.
  auto empty = report::line_plot({{"none", {}, {}}}, o);
  EXPECT_EQ(empty.width(), 500);
}

TEST(Plot, TextAndPaste) {
  report::Canvas c(40, 20);
  EXPECT_EQ(c.text(0, 0, "A1", {0, 0, 0}, 1), 8);
  EXPECT_EQ(c.rgb()[(0 * 40 + 1) * 3], 0);  // the apex of "A"
  const uint8_t red[] = {255, 0, 0};
  c.paste(red, 1, 1, 30, 10, 3);
  EXPECT_EQ(c.rgb()[(12 * 40 + 32) * 3 + 1], 0);
  EXPECT_EQ(c.rgb()[(13 * 40 + 33) * 3 + 1], 255);
}
