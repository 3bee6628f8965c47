// FFmpeg encode/decode: frame counts, stride sampling, crops, and every corrupt input.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "io/media_decode.hpp"
#include "io/media_encode.hpp"
#include "../test_util.hpp"

using namespace mcm;

namespace {
// Frame t is a flat grey level 10*t (so decoded frames reveal their source index).
std::vector<uint8_t> ramp(int frames, int w, int h) {
  std::vector<uint8_t> v(static_cast<size_t>(frames) * w * h * 3);
  for (int t = 0; t < frames; ++t) std::fill_n(v.begin() + static_cast<size_t>(t) * w * h * 3, w * h * 3, static_cast<uint8_t>(10 * t));
  return v;
}
double mean(const uint8_t* p, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s / n;
}
}  // namespace

TEST(Media, Mp4RoundTripAtStride) {
  auto rgb = ramp(20, 64, 48);
  auto mp4 = io::encode_mp4(rgb.data(), 20, 64, 48, {10, 10});
  io::DecodeOptions o;
  o.frames = 4; o.stride = 3; o.width = 32; o.height = 32; o.start = 2;
  auto clip = io::decode_clip(mp4.data(), mp4.size(), "t.mp4", o);
  EXPECT_EQ(clip.source_frames, 20);
  EXPECT_EQ(clip.source_width, 64);
  EXPECT_NEAR(clip.fps, 10.0, 1e-6);
  ASSERT_EQ(clip.frame_indices, (std::vector<int64_t>{2, 5, 8, 11}));
  for (int t = 0; t < 4; ++t)
    EXPECT_NEAR(mean(clip.rgb.data() + t * 32 * 32 * 3, 32 * 32 * 3), 10.0 * clip.frame_indices[t], 3.0);
  // Center crop of a 64x48 frame to a square: 48x48 at x = 8.
  EXPECT_EQ(clip.crop.w, 48);
  EXPECT_EQ(clip.crop.x, 8);
}

TEST(Media, RandomStartIsSeededAndInRange) {
  auto rgb = ramp(30, 32, 32);
  auto mp4 = io::encode_mp4(rgb.data(), 30, 32, 32, {8, 20});
  io::DecodeOptions o;
  o.frames = 5; o.stride = 2; o.width = 16; o.height = 16; o.seed = 42;
  auto a = io::decode_clip(mp4.data(), mp4.size(), "t.mp4", o);
  auto b = io::decode_clip(mp4.data(), mp4.size(), "t.mp4", o);
  EXPECT_EQ(a.frame_indices, b.frame_indices);
  EXPECT_LE(a.frame_indices.back(), 29);
  EXPECT_EQ(a.rgb, b.rgb);
}

TEST(Media, RandomResizedCropFollowsTorchvisionBounds) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    auto c = io::choose_crop(640, 360, 256, 256, io::CropMode::random_resized, 0.75, seed);
    double frac = static_cast<double>(c.w) * c.h / (640.0 * 360.0);
    ASSERT_GE(c.x, 0); ASSERT_GE(c.y, 0);
    ASSERT_LE(c.x + c.w, 640); ASSERT_LE(c.y + c.h, 360);
    // Either a valid random crop (area >= 0.75 up to rounding) or the center fallback.
    bool fallback = c.w == 360 && c.h == 360;
    EXPECT_TRUE(fallback || frac >= 0.74) << frac;
  }
}

TEST(Media, TooShortIsItsOwnError) {
  auto rgb = ramp(5, 32, 32);
  auto mp4 = io::encode_mp4(rgb.data(), 5, 32, 32, {8, 20});
  io::DecodeOptions o;
  o.frames = 4; o.stride = 2; o.width = 16; o.height = 16;
  test::expect_error<io::ClipTooShort>([&] { io::decode_clip(mp4.data(), mp4.size(), "s.tar:k.mp4", o); },
                                       {"s.tar:k.mp4", "5 frames", "needs 7"});
}

TEST(Media, CorruptInputsAreDataErrors) {
  io::DecodeOptions o;
  o.width = o.height = 16;
  std::vector<uint8_t> garbage(4000, 0x5a);
  test::expect_error<DataError>([&] { io::decode_clip(garbage.data(), garbage.size(), "g.mp4", o); }, {"g.mp4"});
  test::expect_error<DataError>([&] { io::decode_clip(nullptr, 0, "z.jpg", o); }, {"z.jpg", "empty file"});
  auto rgb = ramp(1, 64, 64);
  auto jpg = io::encode_jpeg(rgb.data(), 64, 64, 2);
  ASSERT_GT(jpg.size(), 100u);
  EXPECT_EQ(jpg[0], 0xFF);
  EXPECT_EQ(jpg[1], 0xD8);
  auto ok = io::decode_clip(jpg.data(), jpg.size(), "ok.jpg", o);
  EXPECT_NEAR(mean(ok.rgb.data(), ok.rgb.size()), 0.0, 3.0);
  jpg.resize(jpg.size() / 2);
  test::expect_error<DataError>([&] { io::decode_clip(jpg.data(), jpg.size(), "half.jpg", o); }, {"half.jpg"});
  auto mp4 = io::encode_mp4(ramp(10, 32, 32).data(), 10, 32, 32, {8, 20});
  for (size_t i = 48; i < mp4.size(); ++i) mp4[i] ^= 0xA5;
  test::expect_error<DataError>([&] { io::decode_clip(mp4.data(), mp4.size(), "c.mp4", o); }, {"c.mp4"});
}

TEST(Media, GifAndPng) {
  auto rgb = ramp(6, 32, 32);
  auto gif = io::encode_gif(rgb.data(), 6, 32, 32, 8);
  ASSERT_GT(gif.size(), 6u);
  EXPECT_EQ(std::string(gif.begin(), gif.begin() + 6), "GIF89a");
  io::DecodeOptions o;
  o.frames = 6; o.width = o.height = 32; o.start = 0;
  auto clip = io::decode_clip(gif.data(), gif.size(), "a.gif", o);
  EXPECT_EQ(clip.frames, 6);
}

TEST(Media, OddSizesAreRefusedForMp4) {
  auto rgb = ramp(2, 31, 32);
  test::expect_error<IoError>([&] { io::encode_mp4(rgb.data(), 2, 31, 32, {8, 20}); }, {"31x32", "even"});
}

TEST(Media, PngAndWebpStillsDecode) {
  auto d = test::scratch();
  for (const char* ext : {"png", "webp"}) {
    auto path = d / (std::string("red.") + ext);
    std::string cmd = "ffmpeg -nostdin -v error -f lavfi -i color=c=0xC81E1E:s=40x30 -frames:v 1 -y " + path.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    io::DecodeOptions o;
    o.width = o.height = 16;
    auto clip = io::decode_clip(bytes.data(), bytes.size(), path.filename().string(), o);
    EXPECT_EQ(clip.source_width, 40);
    EXPECT_EQ(clip.crop.w, 30);  // center square of a 40x30 still
    EXPECT_NEAR(clip.rgb[0], 200, 6) << ext;
    EXPECT_NEAR(clip.rgb[1], 30, 6) << ext;
  }
}
