// Internal: the argument checks and messages the C++ entry points share (optimizers,
// schedules, row-sparse steps).
#pragma once

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace adamkern::detail {

// A number as messages print it (nine significant digits).
inline std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

// Throws std::invalid_argument("<name> must be <expected>, got <value>") unless ok.
inline void require(bool ok, const char* name, const char* expected, double value) {
  if (!ok) {
    throw std::invalid_argument(std::string(name) + " must be " + expected + ", got " +
                                format_number(value));
  }
}

inline void require_positive(double value, const char* name) {
  require(std::isfinite(value) && value > 0.0, name, "a finite number > 0", value);
}

}  // namespace adamkern::detail
