package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The computing threads' policy, read back from the kernel ({@code /proc/thread-self/stat}). */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class BatchSchedulingTest {
  private static final int SCHED_OTHER = 0;
  private static final int SCHED_BATCH = 3;

  @AfterEach
  void off() {
    BatchScheduling.enable(false);
  }

  /** The policy of the calling thread: field 41 of its stat line (after the command's parentheses). */
  private static int policy() {
    try {
      String stat = Files.readString(Path.of("/proc/thread-self/stat"));
      String[] after = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
      return Integer.parseInt(after[41 - 3]);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Runs {@code body} on a fresh thread, whose policy is the default, and returns its result. */
  private static <T> T onFreshThread(java.util.function.Supplier<T> body) {
    CompletableFuture<T> result = new CompletableFuture<>();
    Thread t = new Thread(() -> {
      try {
        result.complete(body.get());
      } catch (Throwable e) {
        result.completeExceptionally(e);
      }
    });
    t.start();
    return result.join();
  }

  @Test
  void anEnabledComputingThreadRunsUnderSchedBatch() {
    assumeTrue(BatchScheduling.available(), "Linux only");
    BatchScheduling.enable(true);
    int[] policies = onFreshThread(() -> {
      int before = policy();
      BatchScheduling.applyToCurrentThread();
      return new int[] {before, policy()};
    });
    assertEquals(SCHED_OTHER, policies[0]);
    assertEquals(SCHED_BATCH, policies[1]);
  }

  @Test
  void disabledItLeavesThePolicyAlone() {
    assumeTrue(BatchScheduling.available(), "Linux only");
    BatchScheduling.enable(false);
    int after = onFreshThread(() -> {
      BatchScheduling.applyToCurrentThread();
      return policy();
    });
    assertEquals(SCHED_OTHER, after);
  }

  @Test
  void settingItNeedsNoPrivilegeAndReportsSuccess() {
    assumeTrue(BatchScheduling.available(), "Linux only");
    assertTrue(onFreshThread(BatchScheduling::setCurrentThread));
  }
}
