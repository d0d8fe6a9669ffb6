// What the CPU the Swift code is compiled for can do, as the C compiler's predefined macros
// say. Swift's importer compiles this header for the same target CPU as the Swift code
// (`-target-cpu`), so these constants are true exactly when the Swift code's vector
// instructions include them, whatever the manifest or the command line set.
#ifndef BACKPROP_CPU_FEATURES_H
#define BACKPROP_CPU_FEATURES_H

// Fused multiply-add: x86-64 with FMA3 (Haswell and later, `-target-cpu native` there), and
// every arm64 CPU.
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(__aarch64__)
#define BACKPROP_TARGET_HAS_FMA 1
#else
#define BACKPROP_TARGET_HAS_FMA 0
#endif

#endif
