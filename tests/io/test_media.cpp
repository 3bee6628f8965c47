// FFmpeg encode/decode: frame counts, stride sampling, crops, every corrupt input, and seeking
// (the same frames as decoding from the start for every start, GOP layout and container).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

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

// ---- Seeking: the same frames as decoding from the start, for every start and GOP layout ----

namespace {
namespace fs = std::filesystem;

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A clip made by the ffmpeg CLI from one of its test sources; `args` go between input and output.
std::vector<uint8_t> make_clip(const fs::path& dir, const std::string& file, const std::string& args,
                               const std::string& input = "-f lavfi -i testsrc2=s=64x48:r=25:d=4") {
  auto path = dir / file;
  std::string cmd = "ffmpeg -nostdin -v error " + input + " -pix_fmt yuv420p " + args + " -y " + path.string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return read_bytes(path);
}

constexpr int kSide = 32;

// Every frame, decoded from the first one: the reference any window must match.
io::DecodedClip all_frames(const std::vector<uint8_t>& b, const std::string& name, int64_t frames) {
  io::DecodeOptions o;
  o.frames = frames; o.stride = 1; o.width = o.height = kSide; o.start = 0; o.seek = false;
  return io::decode_clip(b.data(), b.size(), name, o);
}

// Decodes the window at `start` and checks it against the reference, frame by frame.
io::DecodedClip expect_window(const std::vector<uint8_t>& b, const std::string& name, const io::DecodedClip& ref,
                              int64_t start, int64_t frames, int64_t stride, bool seek) {
  io::DecodeOptions o;
  o.frames = frames; o.stride = stride; o.width = o.height = kSide; o.start = start; o.seek = seek;
  auto c = io::decode_clip(b.data(), b.size(), name, o);
  const size_t fb = kSide * kSide * 3;
  EXPECT_EQ(c.frame_indices.size(), static_cast<size_t>(frames)) << name << " start " << start;
  for (int64_t k = 0; k < frames && k < static_cast<int64_t>(c.frame_indices.size()); ++k) {
    int64_t i = start + k * stride;
    EXPECT_EQ(c.frame_indices[k], i) << name << " start " << start;
    EXPECT_TRUE(std::equal(c.rgb.begin() + k * fb, c.rgb.begin() + (k + 1) * fb, ref.rgb.begin() + i * fb))
        << name << " start " << start << ": frame " << i << " differs (" << io::to_string(c.method) << ")";
  }
  return c;
}

struct Layout {
  const char* file;
  const char* args;
};
}  // namespace

TEST(MediaSeek, EveryStartMatchesDecodingFromTheStart) {
  auto d = test::scratch();
  // 100 frames at 25 fps each; GOPs from all-intra to one GOP, with and without B-frames.
  const Layout layouts[] = {
      {"intra.mp4", "-c:v libx264 -g 1 -bf 0"},
      {"gop5.mp4", "-c:v libx264 -g 5 -bf 0"},
      {"gop12_b3.mp4", "-c:v libx264 -g 12 -keyint_min 12 -bf 3 -b_strategy 0"},
      {"gop250.mp4", "-c:v libx264 -bf 3"},
      {"open_gop.mp4", "-c:v libx264 -g 24 -bf 3 -x264-params open-gop=1"},
      {"mpeg4_b2.mp4", "-c:v mpeg4 -g 12 -bf 2"},
      {"gop10.mkv", "-c:v libx264 -g 10 -bf 2"},
      {"vp9.webm", "-c:v libvpx-vp9 -g 15 -deadline realtime -cpu-used 8"},
      {"gop8.ts", "-c:v libx264 -g 8 -bf 2"},
  };
  const int64_t frames = 4, stride = 3, span = 10;
  for (const auto& l : layouts) {
    auto b = make_clip(d, l.file, l.args);
    auto info = io::probe_media(b.data(), b.size(), l.file);
    ASSERT_EQ(info.frames, 100) << l.file;
    EXPECT_TRUE(info.timed) << l.file;
    auto ref = all_frames(b, l.file, info.frames);
    int64_t seeks = 0;
    for (int64_t s = 0; s + span <= info.frames; ++s) {
      auto c = expect_window(b, l.file, ref, s, frames, stride, true);
      seeks += c.method == io::DecodeMethod::seek;  // a window at frame 0 has nothing to seek past
      if (c.method == io::DecodeMethod::seek) {
        EXPECT_LT(c.decoded_frames, s + span + 8) << l.file << " start " << s;
      }
      if (s % 9 == 0) {
        auto r = expect_window(b, l.file, ref, s, frames, stride, false);
        EXPECT_EQ(r.method, io::DecodeMethod::from_start);
        EXPECT_LE(r.decoded_frames, s + span + 4) << "decode-from-start counts nothing: " << l.file;
        EXPECT_EQ(r.rgb, c.rgb) << l.file << " start " << s;
      }
    }
    EXPECT_EQ(seeks, info.frames - span) << l.file << ": every window is reached by seeking";
  }
}

TEST(MediaSeek, EditListPrerollAndRandomStarts) {
  auto d = test::scratch();
  // Cutting with -c copy keeps the GOP before the cut as a discarded pre-roll (an edit list):
  // the container lists more frames than decode.
  make_clip(d, "long.mp4", "-c:v libx264 -g 25 -bf 3", "-f lavfi -i testsrc2=s=64x48:r=25:d=8");
  auto b = make_clip(d, "cut.mp4", "-c copy", "-ss 1.3 -i " + (d / "long.mp4").string());
  auto info = io::probe_media(b.data(), b.size(), "cut.mp4");
  auto ref = all_frames(b, "cut.mp4", info.frames);
  ASSERT_GT(info.frames, 150);
  EXPECT_EQ(ref.frames, info.frames);
  for (int64_t s = 1; s + 22 <= info.frames; s += 3) {
    auto c = expect_window(b, "cut.mp4", ref, s, 8, 3, true);
    EXPECT_EQ(c.method, io::DecodeMethod::seek) << s;
  }
  // Random starts: the same start whichever way the window is reached, spread over the range.
  std::set<int64_t> starts;
  for (uint64_t seed = 0; seed < 24; ++seed) {
    io::DecodeOptions o;
    o.frames = 6; o.stride = 4; o.window = 24; o.width = o.height = kSide; o.seed = seed;
    auto a = io::decode_clip(b.data(), b.size(), "cut.mp4", o);
    o.seek = false;
    auto r = io::decode_clip(b.data(), b.size(), "cut.mp4", o);
    EXPECT_EQ(a.frame_indices, r.frame_indices);
    EXPECT_EQ(a.rgb, r.rgb);
    EXPECT_EQ(a.source_frames, info.frames);
    EXPECT_LE(a.frame_indices.front() + 24, info.frames);
    starts.insert(a.frame_indices.front());
  }
  EXPECT_GT(starts.size(), 12u);
}

TEST(MediaSeek, RealVideo2DatasetShard) {
  auto d = test::scratch();
  std::string cmd = "tar -xf " + std::string(MCM_TEST_SOURCE_DIR) + "/tests/data/real/video2dataset-sample.tar -C " + d.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const int64_t frames = 16, stride = 8, span = 121;
  for (const char* key : {"0000008_00001", "0000030_00005", "0000038_00003"}) {
    auto b = read_bytes(d / (std::string(key) + ".mp4"));
    auto info = io::probe_media(b.data(), b.size(), key);
    ASSERT_GE(info.frames, span) << key;
    auto ref = all_frames(b, key, info.frames);
    ASSERT_EQ(ref.frames, info.frames) << key;
    std::vector<int64_t> starts = {1, 2, info.frames - span};
    std::mt19937_64 rng(7);
    for (int k = 0; k < 12; ++k) starts.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(info.frames - span + 1)));
    for (int64_t s : starts) {
      auto c = expect_window(b, key, ref, s, frames, stride, true);
      EXPECT_EQ(c.method, s > 0 ? io::DecodeMethod::seek : io::DecodeMethod::from_start) << key << " start " << s;
    }
  }
}

TEST(MediaSeek, NoLengthMeansOnePassThatPicksAsItGoes) {
  auto d = test::scratch();
  // A raw H.264 stream: no container, no timestamps, no frame count.
  auto b = make_clip(d, "raw.h264", "-c:v libx264 -g 12 -bf 3 -f h264");
  auto info = io::probe_media(b.data(), b.size(), "raw.h264");
  EXPECT_FALSE(info.timed);
  EXPECT_EQ(info.frames, 0);
  auto ref = all_frames(b, "raw.h264", 100);
  std::set<int64_t> starts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    io::DecodeOptions o;
    o.frames = 5; o.stride = 4; o.window = 20; o.width = o.height = kSide; o.seed = seed;
    auto c = io::decode_clip(b.data(), b.size(), "raw.h264", o);
    EXPECT_EQ(c.method, io::DecodeMethod::single_pass);
    EXPECT_EQ(c.decoded_frames, 100) << "one decoding pass, never two";
    EXPECT_EQ(c.source_frames, 100);
    int64_t s = c.frame_indices.front();
    ASSERT_LE(s + 20, 100);
    starts.insert(s);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(c.frame_indices[k], s + 4 * k);
    for (int k = 0; k < 5; ++k)
      EXPECT_TRUE(std::equal(c.rgb.begin() + k * kSide * kSide * 3, c.rgb.begin() + (k + 1) * kSide * kSide * 3,
                             ref.rgb.begin() + (s + 4 * k) * kSide * kSide * 3)) << "seed " << seed << " frame " << k;
  }
  EXPECT_GT(starts.size(), 8u);
  // An explicit start decodes up to the window and no further.
  auto c = expect_window(b, "raw.h264", ref, 30, 5, 4, true);
  EXPECT_EQ(c.method, io::DecodeMethod::from_start);
  EXPECT_LE(c.decoded_frames, 30 + 17 + 4);
  // Too short is found in the same single pass, with the clip's name.
  auto s5 = make_clip(d, "short.h264", "-c:v libx264 -f h264", "-f lavfi -i testsrc2=s=64x48:r=25:d=0.2");
  io::DecodeOptions o;
  o.frames = 4; o.stride = 2; o.width = o.height = 16;
  test::expect_error<io::ClipTooShort>([&] { io::decode_clip(s5.data(), s5.size(), "s.tar:raw.h264", o); },
                                       {"s.tar:raw.h264", "5 frames", "needs 7"});
}

TEST(MediaSeek, TruncatedAndCorruptStreamsNameTheClip) {
  auto d = test::scratch();
  // moov in front: the index lists samples the file no longer has.
  auto fast = make_clip(d, "fast.mp4", "-c:v libx264 -g 12 -movflags +faststart");
  fast.resize(fast.size() * 6 / 10);
  // moov at the end: cut off with the tail.
  auto tail = make_clip(d, "tail.mp4", "-c:v libx264 -g 12");
  tail.resize(tail.size() * 9 / 10);
  // Matroska needs no index: a cut file is a shorter clip, too short for a window of 91 frames.
  auto mkv = make_clip(d, "cut.mkv", "-c:v libx264 -g 12");
  mkv.resize(mkv.size() * 6 / 10);
  // Garbage in the middle of the coded frames: an error, never a concealed picture.
  auto bad = make_clip(d, "bad.mp4", "-c:v libx264 -g 100 -movflags +faststart");
  for (size_t i = bad.size() / 2; i < bad.size() / 2 + 600; ++i) bad[i] = static_cast<uint8_t>(i * 7919 % 251);
  for (bool seek : {true, false}) {
    io::DecodeOptions o;
    o.frames = 4; o.stride = 8; o.width = o.height = 16; o.seek = seek;
    test::expect_error<DataError>([&] { io::decode_clip(fast.data(), fast.size(), "a.tar:fast.mp4", o); },
                                  {"a.tar:fast.mp4", "truncated"});
    test::expect_error<DataError>([&] { io::decode_clip(tail.data(), tail.size(), "a.tar:tail.mp4", o); },
                                  {"a.tar:tail.mp4", "open container"});
    io::DecodeOptions l = o;
    l.frames = 10; l.stride = 10;
    test::expect_error<io::ClipTooShort>([&] { io::decode_clip(mkv.data(), mkv.size(), "a.tar:cut.mkv", l); },
                                         {"a.tar:cut.mkv", "needs 91"});
    io::DecodeOptions w = o;
    w.frames = 2; w.stride = 97; w.start = 1;
    test::expect_error<DataError>([&] { io::decode_clip(bad.data(), bad.size(), "a.tar:bad.mp4", w); }, {"a.tar:bad.mp4"});
  }
}

// The same frames encode to the same bytes, whatever memory follows them: swscale's vector loads
// used to read past the caller's last row (valgrind), so the bytes after the frames leaked into
// the stream. Two copies of one clip followed by different bytes must give identical mp4s.
TEST(Media, Mp4BytesDoNotDependOnMemoryAfterTheFrames) {
  const int w = 34, h = 22, t = 3;  // odd row sizes: no SIMD-friendly width
  std::vector<uint8_t> clip(static_cast<size_t>(w) * h * t * 3);
  for (size_t i = 0; i < clip.size(); ++i) clip[i] = static_cast<uint8_t>((i * 37) % 251);
  std::vector<uint8_t> a(clip), b(clip);
  a.resize(clip.size() + 256, 0x00);
  b.resize(clip.size() + 256, 0xff);
  EXPECT_EQ(io::encode_mp4(a.data(), t, w, h, {8, 20}), io::encode_mp4(b.data(), t, w, h, {8, 20}));
}
