// HDF5 latent shard writer and reader (serial HDF5, one file per input shard).
#include "io/hdf5_store.hpp"

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <mutex>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace mcm::io {
namespace {

void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

herr_t walk_cb(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n > 0) *out += "; ";
  *out += cat(e->func_name ? e->func_name : "?", ": ", e->desc ? e->desc : "?");
  return 0;
}

// h5py's float16: an IEEE-like 16-bit float (sign 15, exponent 10..14, mantissa 0..9, bias 15).
hid_t half_type() {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

hid_t utf8_type() {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

H5Id make_dataset(hid_t file, const char* name, hid_t type, std::vector<hsize_t> per_sample, hsize_t chunk_n,
                  const std::string& where) {
  std::vector<hsize_t> dims{0}, maxd{H5S_UNLIMITED}, chunk{chunk_n};
  for (auto d : per_sample) { dims.push_back(d); maxd.push_back(d); chunk.push_back(d); }
  H5Id space(h5_check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxd.data()), cat(where, ": dataspace ", name)));
  H5Id dcpl(h5_check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"));
  h5_check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), cat(where, ": chunk ", name));
  // No object timestamps: equal inputs give byte-identical shards (checksums, reuse, tests).
  h5_check(H5Pset_obj_track_times(dcpl.get(), false), cat(where, ": track times ", name));
  return H5Id(h5_check(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                       cat(where, ": create dataset \"", name, "\"")));
}

// Grows dataset `d` by one sample and writes `data` (type `mem`) into the new row.
void append_row(hid_t d, hid_t mem, const void* data, hsize_t n, const std::string& where, const char* name) {
  H5Id fs0(H5Dget_space(d));
  int rank = H5Sget_simple_extent_ndims(fs0.get());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(fs0.get(), dims.data(), nullptr);
  dims[0] = n + 1;
  h5_check(H5Dset_extent(d, dims.data()), cat(where, ": extend \"", name, "\""));
  H5Id fspace(h5_check(H5Dget_space(d), "H5Dget_space"));
  std::vector<hsize_t> start(rank, 0), count = dims;
  start[0] = n;
  count[0] = 1;
  h5_check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "select");
  H5Id mspace(h5_check(H5Screate_simple(rank, count.data(), nullptr), "mem space"));
  h5_check(H5Dwrite(d, mem, mspace.get(), fspace.get(), H5P_DEFAULT, data), cat(where, ": write \"", name, "\" row ", n));
}

void write_attr(hid_t obj, const std::string& name, const AttrValue& v, const std::string& where) {
  H5Id space(h5_check(H5Screate(H5S_SCALAR), "scalar space"));
  if (auto* i = std::get_if<int64_t>(&v)) {
    H5Id a(h5_check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), cat(where, ": attribute ", name)));
    h5_check(H5Awrite(a.get(), H5T_NATIVE_INT64, i), cat(where, ": write attribute ", name));
  } else if (auto* d = std::get_if<double>(&v)) {
    H5Id a(h5_check(H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), cat(where, ": attribute ", name)));
    h5_check(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, d), cat(where, ": write attribute ", name));
  } else {
    H5Id t(utf8_type());
    const char* s = std::get<std::string>(v).c_str();
    H5Id a(h5_check(H5Acreate2(obj, name.c_str(), t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), cat(where, ": attribute ", name)));
    h5_check(H5Awrite(a.get(), t.get(), &s), cat(where, ": write attribute ", name));
  }
}

// A writer's commit: its attributes and num_samples, a flush, `close` (every handle), then the
// rename of the temporary into place.
void finish_file(hid_t file, const std::map<std::string, AttrValue>& attrs, hsize_t n, const std::filesystem::path& tmp,
                 const std::filesystem::path& path, const std::function<void()>& close) {
  for (auto& [name, v] : attrs) write_attr(file, name, v, tmp.string());
  write_attr(file, "num_samples", static_cast<int64_t>(n), tmp.string());
  h5_check(H5Fflush(file, H5F_SCOPE_GLOBAL), cat("flush ", tmp));
  close();
  fs::commit_rename(tmp, path);
}

}  // namespace

void H5Id::reset() noexcept {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: break;
  }
  id_ = H5I_INVALID_HID;
}

hid_t h5_check(hid_t id, const std::string& what) {
  if (id >= 0) return id;
  std::string stack;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &stack);
  H5Eclear2(H5E_DEFAULT);
  throw IoError(cat(what, ": ", stack.empty() ? "HDF5 error" : stack));
}

std::string hdf5_version() {
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  return cat("HDF5 ", maj, ".", min, ".", rel);
}

LatentShardWriter::LatentShardWriter(std::filesystem::path path, LatentShardSpec spec)
    : path_(std::move(path)), spec_(std::move(spec)) {
  silence_hdf5();
  tmp_ = path_;
  tmp_ += cat(".", ::getpid(), ".tmp");  // two processes writing one shard never share a temporary
  std::string where = tmp_.string();
  file_ = H5Id(h5_check(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), cat("create ", where)));
  try {  // the destructor does not run for a throwing constructor: clean up the .tmp here
    H5Id half(half_type()), str(utf8_type());
    latents_ = make_dataset(file_.get(), "latents", half.get(), spec_.latent_shape, 1, where);
    text_ = make_dataset(file_.get(), "text_emb", half.get(), {spec_.text_len, spec_.text_dim}, 1, where);
    caption_ = make_dataset(file_.get(), "caption", str.get(), {}, 256, where);
    key_ = make_dataset(file_.get(), "key", str.get(), {}, 256, where);
    if (spec_.frames) frames_ = make_dataset(file_.get(), "frame_indices", H5T_STD_I64LE, {spec_.frames}, 256, where);
  } catch (...) {
    close_all();
    std::remove(tmp_.c_str());
    throw;
  }
}

void LatentShardWriter::append(const uint16_t* latent, const uint16_t* text_emb, const std::string& caption,
                               const std::string& key, const std::vector<int64_t>& frame_indices) {
  require<IoError>(!finished_, "append to finished shard ", path_);
  std::string where = tmp_.string();
  H5Id half(half_type()), str(utf8_type());
  append_row(latents_.get(), half.get(), latent, n_, where, "latents");
  append_row(text_.get(), half.get(), text_emb, n_, where, "text_emb");
  const char* c = caption.c_str();
  const char* k = key.c_str();
  append_row(caption_.get(), str.get(), &c, n_, where, "caption");
  append_row(key_.get(), str.get(), &k, n_, where, "key");
  if (frames_) {
    require<IoError>(frame_indices.size() == spec_.frames, where, ": sample ", key, " has ", frame_indices.size(),
                     " frame indices, expected ", spec_.frames);
    append_row(frames_.get(), H5T_NATIVE_INT64, frame_indices.data(), n_, where, "frame_indices");
  }
  ++n_;
}

void LatentShardWriter::close_all() noexcept {
  latents_.reset(); text_.reset(); caption_.reset(); key_.reset(); frames_.reset(); file_.reset();
}

void LatentShardWriter::finish() {
  require<IoError>(!finished_, "shard ", path_, ": finish called twice");
  finish_file(file_.get(), attrs_, n_, tmp_, path_, [this] { close_all(); });
  finished_ = true;
}

LatentShardWriter::~LatentShardWriter() {
  if (finished_) return;
  close_all();
  std::remove(tmp_.c_str());
}

LatentShardReader::LatentShardReader(const std::filesystem::path& path) : path_(path) {
  silence_hdf5();
  file_ = H5Id(h5_check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), cat("open ", path)));
  H5Id d(h5_check(H5Dopen2(file_.get(), "latents", H5P_DEFAULT), cat("open dataset \"latents\" in ", path_)));
  H5Id space(H5Dget_space(d.get()));
  hsize_t dims[8] = {};
  require<IoError>(H5Sget_simple_extent_ndims(space.get()) >= 1 && H5Sget_simple_extent_ndims(space.get()) <= 8,
                   "dataset \"latents\" in ", path_, ": unexpected rank");
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  n_ = dims[0];
}

namespace {
std::vector<hsize_t> row_shape(hid_t file, const char* name, const std::filesystem::path& p) {
  H5Id d(h5_check(H5Dopen2(file, name, H5P_DEFAULT), cat("open dataset \"", name, "\" in ", p)));
  H5Id s(H5Dget_space(d.get()));
  int r = H5Sget_simple_extent_ndims(s.get());
  std::vector<hsize_t> dims(r);
  H5Sget_simple_extent_dims(s.get(), dims.data(), nullptr);
  return std::vector<hsize_t>(dims.begin() + 1, dims.end());
}

std::string string_at_in(hid_t file, const std::filesystem::path& path_, const std::string& name, hsize_t i) {
  H5Id d(h5_check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), cat("open dataset \"", name, "\" in ", path_)));
  H5Id fs(h5_check(H5Dget_space(d.get()), cat("dataspace of \"", name, "\" in ", path_)));
  require<IoError>(H5Sget_simple_extent_ndims(fs.get()) == 1, "dataset \"", name, "\" in ", path_, ": not a column");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(fs.get(), &n, nullptr);
  require<IoError>(i < n, "read \"", name, "\" row ", i, " of ", n, " in ", path_);
  hsize_t start = i, one = 1;
  h5_check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, &start, nullptr, &one, nullptr), "select");
  H5Id ms(h5_check(H5Screate_simple(1, &one, nullptr), "mem space"));
  H5Id t(utf8_type());
  char* raw = nullptr;
  h5_check(H5Dread(d.get(), t.get(), ms.get(), fs.get(), H5P_DEFAULT, &raw), cat("read \"", name, "\" row ", i, " in ", path_));
  std::string out = raw ? raw : "";
  H5Dvlen_reclaim(t.get(), ms.get(), H5P_DEFAULT, &raw);
  return out;
}

AttrValue attr_in(hid_t file, const std::filesystem::path& path_, const std::string& name) {
  H5Id a(h5_check(H5Aopen(file, name.c_str(), H5P_DEFAULT), cat("open attribute \"", name, "\" in ", path_)));
  H5Id t(H5Aget_type(a.get()));
  switch (H5Tget_class(t.get())) {
    case H5T_INTEGER: { int64_t v; h5_check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), "read attr"); return v; }
    case H5T_FLOAT: { double v; h5_check(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), "read attr"); return v; }
    default: {
      H5Id st(utf8_type());
      char* s = nullptr;
      h5_check(H5Aread(a.get(), st.get(), &s), cat("read attribute \"", name, "\" in ", path_));
      std::string out = s ? s : "";
      H5free_memory(s);
      return out;
    }
  }
}

// Row i of dataset `name` read as `mem` into out (count elements, checked against the row size).
void read_row_into(hid_t file, const char* name, hsize_t i, hid_t mem, void* out, size_t count, const std::filesystem::path& p) {
  H5Id d(h5_check(H5Dopen2(file, name, H5P_DEFAULT), cat("open dataset \"", name, "\" in ", p)));
  H5Id fs(h5_check(H5Dget_space(d.get()), cat("dataspace of \"", name, "\" in ", p)));
  int r = H5Sget_simple_extent_ndims(fs.get());
  require<IoError>(r >= 1 && r <= 8, "dataset \"", name, "\" in ", p, ": unexpected rank ", r);
  std::vector<hsize_t> dims(r), start(r, 0);
  H5Sget_simple_extent_dims(fs.get(), dims.data(), nullptr);
  require<IoError>(i < dims[0], "read \"", name, "\" row ", i, " of ", dims[0], " in ", p);
  size_t row = 1;
  for (int k = 1; k < r; ++k) row *= dims[k];
  require<IoError>(row == count, "read \"", name, "\" row ", i, " in ", p, ": a row holds ", row, " values, the buffer ", count);
  start[0] = i;
  dims[0] = 1;
  h5_check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, dims.data(), nullptr), "select");
  H5Id ms(h5_check(H5Screate_simple(r, dims.data(), nullptr), "mem space"));
  h5_check(H5Dread(d.get(), mem, ms.get(), fs.get(), H5P_DEFAULT, out), cat("read \"", name, "\" row ", i, " in ", p));
}

std::vector<uint16_t> read_row(hid_t file, const char* name, hsize_t i, const std::filesystem::path& p) {
  H5Id d(h5_check(H5Dopen2(file, name, H5P_DEFAULT), cat("open dataset \"", name, "\" in ", p)));
  H5Id fs(H5Dget_space(d.get()));
  int r = H5Sget_simple_extent_ndims(fs.get());
  std::vector<hsize_t> dims(r), start(r, 0);
  H5Sget_simple_extent_dims(fs.get(), dims.data(), nullptr);
  require<IoError>(i < dims[0], "read \"", name, "\" row ", i, " of ", dims[0], " in ", p);
  start[0] = i;
  dims[0] = 1;
  h5_check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, dims.data(), nullptr), "select");
  H5Id ms(H5Screate_simple(r, dims.data(), nullptr));
  size_t count = 1;
  for (auto x : dims) count *= x;
  std::vector<uint16_t> out(count);
  H5Id half(half_type());
  h5_check(H5Dread(d.get(), half.get(), ms.get(), fs.get(), H5P_DEFAULT, out.data()), cat("read \"", name, "\" in ", p));
  return out;
}
}  // namespace

std::vector<hsize_t> LatentShardReader::latent_shape() const { return row_shape(file_.get(), "latents", path_); }
std::vector<hsize_t> LatentShardReader::text_shape() const { return row_shape(file_.get(), "text_emb", path_); }
std::vector<uint16_t> LatentShardReader::latent(hsize_t i) const { return read_row(file_.get(), "latents", i, path_); }
std::vector<uint16_t> LatentShardReader::text_emb(hsize_t i) const { return read_row(file_.get(), "text_emb", i, path_); }

std::vector<std::string> LatentShardReader::strings(const std::string& name) const {
  H5Id d(h5_check(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), cat("open dataset \"", name, "\" in ", path_)));
  H5Id s(H5Dget_space(d.get()));
  hsize_t n = 0;
  H5Sget_simple_extent_dims(s.get(), &n, nullptr);
  std::vector<char*> raw(n);
  H5Id t(utf8_type());
  if (n) h5_check(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), cat("read \"", name, "\" in ", path_));
  std::vector<std::string> out;
  for (char* p : raw) out.emplace_back(p ? p : "");
  if (n) H5Dvlen_reclaim(t.get(), s.get(), H5P_DEFAULT, raw.data());
  return out;
}

void LatentShardReader::read_half_row(const std::string& name, hsize_t i, uint16_t* out, size_t count) const {
  H5Id half(half_type());
  read_row_into(file_.get(), name.c_str(), i, half.get(), out, count, path_);
}

std::string LatentShardReader::string_at(const std::string& name, hsize_t i) const {
  return string_at_in(file_.get(), path_, name, i);
}

AttrValue LatentShardReader::attr(const std::string& name) const { return attr_in(file_.get(), path_, name); }

VideoSampleWriter::VideoSampleWriter(std::filesystem::path path, hsize_t frames, hsize_t height, hsize_t width)
    : path_(std::move(path)) {
  silence_hdf5();
  tmp_ = path_;
  tmp_ += cat(".", ::getpid(), ".tmp");
  const std::string where = tmp_.string();
  file_ = H5Id(h5_check(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), cat("create ", where)));
  try {
    H5Id str(utf8_type());
    videos_ = make_dataset(file_.get(), "videos", H5T_STD_U8LE, {frames, height, width, 3}, 1, where);
    prompt_ = make_dataset(file_.get(), "prompt", str.get(), {}, 256, where);
    index_ = make_dataset(file_.get(), "prompt_index", H5T_STD_I64LE, {}, 256, where);
    seed_ = make_dataset(file_.get(), "seed", H5T_STD_I64LE, {}, 256, where);
  } catch (...) {
    close_all();
    std::remove(tmp_.c_str());
    throw;
  }
}

void VideoSampleWriter::append(const uint8_t* video, const std::string& prompt, int64_t prompt_index, int64_t seed) {
  require<IoError>(!finished_, "append to finished sample file ", path_);
  const std::string where = tmp_.string();
  H5Id str(utf8_type());
  append_row(videos_.get(), H5T_NATIVE_UINT8, video, n_, where, "videos");
  const char* p = prompt.c_str();
  append_row(prompt_.get(), str.get(), &p, n_, where, "prompt");
  append_row(index_.get(), H5T_NATIVE_INT64, &prompt_index, n_, where, "prompt_index");
  append_row(seed_.get(), H5T_NATIVE_INT64, &seed, n_, where, "seed");
  ++n_;
}

void VideoSampleWriter::close_all() noexcept {
  videos_.reset(); prompt_.reset(); index_.reset(); seed_.reset(); file_.reset();
}

void VideoSampleWriter::finish() {
  require<IoError>(!finished_, "sample file ", path_, ": finish called twice");
  finish_file(file_.get(), attrs_, n_, tmp_, path_, [this] { close_all(); });
  finished_ = true;
}

VideoSampleWriter::~VideoSampleWriter() {
  if (finished_) return;
  close_all();
  std::remove(tmp_.c_str());
}

VideoSampleReader::VideoSampleReader(const std::filesystem::path& path) : path_(path) {
  silence_hdf5();
  file_ = H5Id(h5_check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), cat("open ", path)));
  shape_ = row_shape(file_.get(), "videos", path_);
  require<IoError>(shape_.size() == 4 && shape_[3] == 3, "dataset \"videos\" in ", path_, ": expected [N, T, H, W, 3]");
  H5Id d(h5_check(H5Dopen2(file_.get(), "videos", H5P_DEFAULT), cat("open dataset \"videos\" in ", path_)));
  H5Id space(H5Dget_space(d.get()));
  hsize_t dims[5] = {};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  n_ = dims[0];
}

std::vector<uint8_t> VideoSampleReader::video(hsize_t i) const {
  size_t count = 1;
  for (auto d : shape_) count *= d;
  std::vector<uint8_t> out(count);
  read_row_into(file_.get(), "videos", i, H5T_NATIVE_UINT8, out.data(), count, path_);
  return out;
}

std::string VideoSampleReader::prompt(hsize_t i) const { return string_at_in(file_.get(), path_, "prompt", i); }

int64_t VideoSampleReader::prompt_index(hsize_t i) const {
  int64_t v = 0;
  read_row_into(file_.get(), "prompt_index", i, H5T_NATIVE_INT64, &v, 1, path_);
  return v;
}

int64_t VideoSampleReader::seed(hsize_t i) const {
  int64_t v = 0;
  read_row_into(file_.get(), "seed", i, H5T_NATIVE_INT64, &v, 1, path_);
  return v;
}

AttrValue VideoSampleReader::attr(const std::string& name) const { return attr_in(file_.get(), path_, name); }

}  // namespace mcm::io
