// Test helpers: a scratch folder per test, removed afterwards.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.hpp"

namespace mcm::test {

inline std::filesystem::path scratch() {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto p = std::filesystem::temp_directory_path() / "mcm-tests" / (std::string(info->test_suite_name()) + "." + info->name());
  // Not std::filesystem::remove_all: libtorch.so exports a broken copy of it that torch-linked
  // tests would bind to (segfault seen with torch 2.11.0 wheels).
  std::string cmd = "rm -rf '" + p.string() + "'";
  if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << cmd;
  std::filesystem::create_directories(p);
  return p;
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

/// Expects `fn` to throw E with a message containing every one of `parts`.
template <class E, class F>
void expect_error(F&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception thrown";
  } catch (const E& e) {
    std::string m = e.what();
    for (auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "missing \"" << p << "\" in: " << m;
  }
}

}  // namespace mcm::test
