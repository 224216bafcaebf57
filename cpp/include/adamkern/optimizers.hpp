// The registry: every optimizer, one line each. Its math header (math/<name>.hpp) describes it
// whole (options with names, defaults and ranges, see math/describe.hpp; state; update); the
// validation of the C++ entry points and the Python metadata (adamkern._core.optimizer_options)
// are derived from these descriptions.
#pragma once

#include <tuple>

#include "adamkern/math/adabelief.hpp"
#include "adamkern/math/adadelta.hpp"
#include "adamkern/math/adagrad.hpp"
#include "adamkern/math/adam.hpp"
#include "adamkern/math/adamax.hpp"
#include "adamkern/math/adan.hpp"
#include "adamkern/math/lamb.hpp"
#include "adamkern/math/lion.hpp"
#include "adamkern/math/nadam.hpp"
#include "adamkern/math/radam.hpp"
#include "adamkern/math/rmsprop.hpp"
#include "adamkern/math/sgd.hpp"
#include "adamkern/math/yogi.hpp"

namespace adamkern {

using Optimizers =
    std::tuple<math::Adam, math::Adamax, math::Nadam, math::Radam, math::Rmsprop, math::Adagrad,
               math::Adadelta, math::Sgd, math::Lion, math::Adabelief, math::Lamb, math::Adan,
               math::Yogi>;

}  // namespace adamkern
