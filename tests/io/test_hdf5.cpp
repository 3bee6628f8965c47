// HDF5 latent shards: round trip, attributes, no half-written file, handle RAII.
#include "io/hdf5_store.hpp"
#include "../test_util.hpp"

using namespace mcm;

TEST(Hdf5, RoundTrip) {
  auto d = test::scratch();
  io::LatentShardSpec spec{{2, 3, 4, 4}, 5, 6, 3};
  std::vector<uint16_t> lat(2 * 3 * 4 * 4), txt(5 * 6);
  for (size_t i = 0; i < lat.size(); ++i) lat[i] = static_cast<uint16_t>(0x3c00 + i);  // half 1.0 + ulps
  for (size_t i = 0; i < txt.size(); ++i) txt[i] = 0xbc00;                              // half -1.0
  {
    io::LatentShardWriter w(d / "s.h5", spec);
    w.append(lat.data(), txt.data(), "a red circle", "k0", {0, 2, 4});
    w.append(lat.data(), txt.data(), "ünïcödé ✓", "k1", {1, 3, 5});
    w.set_attr("scaling_factor", 0.18215);
    w.set_attr("frame_stride", int64_t{2});
    w.set_attr("autoencoder", std::string("pixel_shuffle"));
    EXPECT_FALSE(std::filesystem::exists(d / "s.h5"));  // only the .tmp exists until finish
    w.finish();
  }
  io::LatentShardReader r(d / "s.h5");
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(r.latent_shape(), (std::vector<hsize_t>{2, 3, 4, 4}));
  EXPECT_EQ(r.latent(1), lat);
  EXPECT_EQ(r.text_emb(0), txt);
  EXPECT_EQ(r.strings("caption")[1], "ünïcödé ✓");
  EXPECT_EQ(std::get<double>(r.attr("scaling_factor")), 0.18215);
  EXPECT_EQ(std::get<int64_t>(r.attr("num_samples")), 2);
  EXPECT_EQ(std::get<std::string>(r.attr("autoencoder")), "pixel_shuffle");
  test::expect_error<IoError>([&] { r.latent(2); }, {"row 2 of 2"});
}

TEST(Hdf5, AbandonedWriterLeavesNoFile) {
  auto d = test::scratch();
  {
    io::LatentShardWriter w(d / "x.h5", io::LatentShardSpec{{1, 2, 2}, 1, 1, 0});
    uint16_t z[4] = {}, t = 0;
    w.append(z, &t, "c", "k");
  }
  EXPECT_TRUE(std::filesystem::is_empty(d));  // neither the shard nor its temporary
}

TEST(Hdf5, OpenErrorsWalkTheStack) {
  auto d = test::scratch();
  test::write_text(d / "bad.h5", "not hdf5");
  test::expect_error<IoError>([&] { io::LatentShardReader r(d / "bad.h5"); }, {"open", "bad.h5"});
}

TEST(Hdf5, H5IdIsMoveOnly) {
  io::H5Id a(H5Screate(H5S_SCALAR));
  ASSERT_TRUE(a);
  io::H5Id b(std::move(a));
  EXPECT_FALSE(a);
  EXPECT_TRUE(b);
  b = io::H5Id();
  EXPECT_FALSE(b);
}
