// The reference side of `bench bridge`: the same loop as the Swift side, written directly
// against libtorch in C++. Prints nanoseconds per op for one timed run.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 100000;
  at::set_num_threads(1);
  const auto a = at::ones({1}), b = at::ones({1});
  for (long i = 0; i < iterations / 10; i++) { auto c = a + b; }  // warm-up
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < iterations; i++) {
    auto c = a + b;
    asm volatile("" : : "r"(c.unsafeGetTensorImpl()) : "memory");  // keep the result alive to here
  }
  const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.3f\n", ns / static_cast<double>(iterations));
  return 0;
}
