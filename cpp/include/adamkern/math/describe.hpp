// What an optimizer's math header says about its options, beside its update: the name of each
// option (as adamkern.ops and the options struct spell it), the member of the options struct
// that holds it (whose initialiser is the one default), and the range of values it accepts.
// From these the C++ entry points validate options (validate_options in optimizers.cpp) and
// the Python layer reads every default and range (adamkern._core.optimizer_options()); the
// class name is that of the optimizer's class in adamkern.optim and adamkern.torch, which
// are made from the registry unless the optimizer's class there does more than call its op.
//
//   struct Example {
//     using Options = ExampleOptions;
//     static constexpr const char* kName = "example";        // adamkern.example_
//     static constexpr const char* kClassName = "Example";   // adamkern.optim.Example
//     static constexpr bool kTakesStep = true;               // the entry point takes `step`
//     static constexpr NumberOption<Options> kNumbers[] = {kLr<Options>, kBeta1<Options>};
//     static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
//     static constexpr StateBuffer kState[] = {     // Tensor::state[k], in order
//         {"exp_avg", "exp_avgs", kSigned}, {"exp_avg_sq", "exp_avg_sqs", kUnsigned},
//         {"max_exp_avg_sq", "max_exp_avg_sqs", kUnsigned, Needed::flag, "amsgrad"}};
//   };
#pragma once

namespace adamkern::math {

// The values an option accepts (every range but unit_open_or_unset excludes NaN).
enum class Range {
  finite,              // any finite number
  non_negative,        // finite, >= 0
  positive,            // finite, > 0
  unit_open,           // [0, 1): a moving average's decay that must forget
  unit_closed,         // [0, 1]
  unit_open_or_unset,  // [0, 1), or NaN: not given (Python's None; the optimizer derives it)
  positive_or_inf,     // > 0, +inf included (a bound that may be absent)
};

template <class Options>
struct NumberOption {
  const char* name;  // the options struct's member, the Python keyword
  double Options::* member;
  Range range;
  const char* label = nullptr;  // the name in messages when Python groups it ("betas[0]")

  constexpr const char* shown() const { return label != nullptr ? label : name; }
};

template <class Options>
struct FlagOption {
  const char* name;
  bool Options::* member;
};

// The options most of the family shares, each with the one range it has everywhere.
template <class O>
inline constexpr NumberOption<O> kLr{"lr", &O::lr, Range::non_negative};
template <class O>
inline constexpr NumberOption<O> kEps{"eps", &O::eps, Range::positive};
template <class O>
inline constexpr NumberOption<O> kEpsRoot{"eps_root", &O::eps_root, Range::non_negative};
template <class O>
inline constexpr NumberOption<O> kWeightDecay{"weight_decay", &O::weight_decay,
                                              Range::non_negative};
// Decay rates of moving averages that must forget (Python's betas[0], betas[1]).
template <class O>
inline constexpr NumberOption<O> kBeta1{"beta1", &O::beta1, Range::unit_open, "betas[0]"};
template <class O>
inline constexpr NumberOption<O> kBeta2{"beta2", &O::beta2, Range::unit_open, "betas[1]"};
template <class O>
inline constexpr FlagOption<O> kMaximize{"maximize", &O::maximize};
template <class O>
inline constexpr FlagOption<O> kDecoupledWeightDecay{"decoupled_weight_decay",
                                                     &O::decoupled_weight_decay};

// When an optimizer uses a state buffer, from one of its options.
enum class Needed {
  always,
  flag,      // the flag `option` is set
  positive,  // the number `option` is > 0
  nonzero,   // the number `option` is != 0
};

inline constexpr bool kSigned = true;     // a buffer whose values can be negative
inline constexpr bool kUnsigned = false;  // (the 8-bit state's map is signed or unsigned)

// One state buffer: its names, sign, when it is used, and its value before the first step
// (0 unless an initialising option is named: the option of the optimizer's constructor, in
// adamkern.optim and torch, that sets it, and that option's default).
struct StateBuffer {
  const char* name;      // torch's state[name], and adamkern.optim's
  const char* argument;  // the functional op's list argument
  bool is_signed;
  Needed needed = Needed::always;
  const char* option = nullptr;  // the option `needed` reads
  const char* initial_option = nullptr;
  double initial = 0.0;
};

// The loop shape of most updates: one variant, no torch-specific remainder, and each of the
// first kBuffers state buffers (kState's order) read and written.
template <int kBuffers>
struct OneLoop {
  static constexpr int kVariants = 1;
  static constexpr bool kTorchRemainder = false;
  static constexpr unsigned reads(int) { return (1u << kBuffers) - 1u; }
  static constexpr unsigned writes(int) { return (1u << kBuffers) - 1u; }
};

}  // namespace adamkern::math
