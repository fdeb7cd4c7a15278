// Exceptions raised by code shared between bindings; each binding maps them to Python's
// TypeError / ValueError.
#pragma once
#include <stdexcept>
#include <string>

namespace fusedupdates {

struct ArgTypeError : std::runtime_error {
  explicit ArgTypeError(const std::string& m) : std::runtime_error(m) {}
};
struct ArgValueError : std::runtime_error {
  explicit ArgValueError(const std::string& m) : std::runtime_error(m) {}
};

}  // namespace fusedupdates
