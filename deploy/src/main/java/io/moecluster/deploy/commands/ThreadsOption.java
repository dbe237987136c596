package io.moecluster.deploy.commands;

import picocli.CommandLine.Option;

/** {@code --threads N}: the compute threads of the commands that compute in this process. */
final class ThreadsOption {
  /** Far past any core count we run on; above it the number is a typo, and each thread costs a stack. */
  static final int MAX = 1024;

  @Option(names = "--threads", description = "compute threads, 0 = all cores (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  int threads;

  /** The threads asked for, 0 for all cores; refuses a count outside [0, {@value #MAX}]. */
  int threads() {
    if (threads < 0 || threads > MAX) {
      throw new IllegalArgumentException("--threads must be in [0, " + MAX + "] (0: all cores), got " + threads);
    }
    return threads;
  }
}
