// libFuzzer target for the safetensors reader: any byte string is a candidate file image. A
// DataError (any mcm::Error) is the expected refusal; a crash, a sanitizer report, a leak, another
// exception type, or a parsed tensor that breaks the invariants below is a finding. Each input is
// parsed twice: as a file image, and as choices for a synthesised header (Note [synthesised headers]).
// Build and run with fuzz/run.sh (README "Fuzzing").
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "core/error.hpp"
#include "io/safetensors.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& key) {
  std::fprintf(stderr, "safetensors_fuzz: %s (tensor \"%s\")\n", what, key.c_str());
  std::abort();
}

// Checks what the reader promises about an accepted file and reads every data byte, so ASan
// reports a view that leaves the buffer even when the bounds arithmetic is wrong.
void check(const mcm::io::SafetensorsFile& f, const uint8_t* lo, size_t size) {
  std::vector<std::pair<const uint8_t*, const uint8_t*>> spans;
  for (const auto& [key, t] : f.tensors()) {
    const size_t esize = mcm::io::dtype_size(t.dtype);
    if (esize == 0) finding("unknown dtype", key);
    // Element count in unsigned arithmetic with an overflow check: a consumer multiplies the
    // shape out, so shape, dtype and byte count must agree without wrapping.
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) finding("negative dimension", key);
      const auto u = static_cast<uint64_t>(d);
      if (u != 0 && numel > UINT64_MAX / u) finding("element count overflows", key);
      numel *= u;
    }
    if (numel > UINT64_MAX / esize || numel * esize != t.nbytes) finding("nbytes disagrees with shape and dtype", key);
    if (static_cast<uint64_t>(t.numel()) != numel) finding("TensorView::numel() disagrees", key);
    if (t.nbytes > 0) {
      if (t.data < lo + 8 || t.data > lo + size || t.nbytes > static_cast<size_t>(lo + size - t.data))
        finding("data span leaves the file image", key);
      unsigned acc = 0;
      for (size_t i = 0; i < t.nbytes; ++i) acc += t.data[i];
      volatile unsigned sink = acc;
      (void)sink;
      spans.emplace_back(t.data, t.data + t.nbytes);
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) finding("data spans overlap", "*");
  for (const auto& [k, v] : f.metadata()) {
    volatile size_t n = k.size() + v.size();
    (void)n;
  }
}

// Parses one file image and checks it; the image is moved into the reader, so its address is
// the one the views must stay inside.
void parse_and_check(std::vector<uint8_t> bytes) {
  const uint8_t* lo = bytes.data();
  const size_t size = bytes.size();
  try {
    auto f = mcm::io::SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
    check(f, lo, size);
    // Views must survive a move of the owning file (move constructor, then move assignment).
    mcm::io::SafetensorsFile g(std::move(f));
    f = std::move(g);
    check(f, lo, size);
    for (const auto& [key, t] : f.tensors())
      if (&f.at(key) != &t) finding("at() returns another view", key);
  } catch (const mcm::Error&) {
    // Expected: the reader refused the input.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetensors_fuzz: unexpected %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
}

// Note [synthesised headers]: byte mutations rarely keep the JSON valid while changing a number
// to an edge value, so the same input also drives a generator of well-formed headers: dtypes
// (some unsupported), sizes from a table of powers of two around the int64/uint64 limits or
// random, and offsets derived from the shape with wrapping uint64 arithmetic (what a careless
// writer or an attacker produces), sometimes nudged, overlapping or out of range.
std::vector<uint8_t> synthesise(const uint8_t* data, size_t size) {
  static constexpr const char* kNames[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16", "F8_E4M3"};
  static constexpr uint64_t kSizes[] = {0, 1, 2, 3, 7, uint64_t{1} << 31, uint64_t{1} << 32, (uint64_t{1} << 61) - 1,
                                        uint64_t{1} << 61, (uint64_t{1} << 61) + 1, uint64_t{1} << 62, (uint64_t{1} << 62) + 1,
                                        uint64_t{1} << 63, (uint64_t{1} << 63) + 1, UINT64_MAX - 1, UINT64_MAX};
  FuzzedDataProvider in(data, size);
  std::string h = "{";
  if (in.ConsumeBool()) h += R"("__metadata__":{"format":"pt"},)";
  const int count = in.ConsumeIntegralInRange(0, 4);
  uint64_t cursor = 0;
  for (int i = 0; i < count; ++i) {
    const int di = in.ConsumeIntegralInRange<int>(0, std::size(kNames) - 1);
    const uint64_t esize = di < 10 ? mcm::io::dtype_size(mcm::io::parse_dtype(kNames[di])) : 2;
    const int ndim = in.ConsumeIntegralInRange(0, in.ConsumeBool() ? 3 : 17);
    std::string shape = "[";
    uint64_t bytes = esize;  // wraps on purpose
    for (int d = 0; d < ndim; ++d) {
      uint64_t x = in.ConsumeBool() ? kSizes[in.ConsumeIntegralInRange<size_t>(0, std::size(kSizes) - 1)]
                                    : in.ConsumeIntegral<uint64_t>() >> in.ConsumeIntegralInRange(0, 63);
      shape += (d ? "," : "") + std::to_string(x);
      bytes *= x;
    }
    shape += "]";
    uint64_t begin = cursor;
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0: break;                                                  // contiguous
      case 1: begin = cursor - in.ConsumeIntegralInRange<uint64_t>(0, 8); break;  // overlap or wrap
      case 2: begin = in.ConsumeIntegral<uint64_t>(); break;
      default: begin = cursor + in.ConsumeIntegralInRange<uint64_t>(0, 8); break;
    }
    uint64_t end = begin + bytes + static_cast<uint64_t>(in.ConsumeIntegralInRange<int64_t>(-2, 2) * in.ConsumeBool());
    cursor = end;
    h += (i ? "," : "") + std::string("\"t") + std::to_string(i) + R"(":{"dtype":")" + kNames[di] + R"(","shape":)" +
         shape + R"(,"data_offsets":[)" + std::to_string(begin) + "," + std::to_string(end) + "]}";
  }
  h += "}";
  const size_t data_bytes = std::min<uint64_t>(in.ConsumeBool() ? cursor : in.ConsumeIntegralInRange<uint64_t>(0, 256), 4096);
  std::vector<uint8_t> img(8 + h.size() + data_bytes, 0xa5);
  const uint64_t n = h.size();
  std::memcpy(img.data(), &n, 8);
  std::memcpy(img.data() + 8, h.data(), h.size());
  return img;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parse_and_check(std::vector<uint8_t>(data, data + size));  // exactly sized: ASan sees one byte past
  parse_and_check(synthesise(data, size));                     // Note [synthesised headers]
  return 0;
}
