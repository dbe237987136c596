package io.moecluster.deploy.chaos;

import io.moecluster.core.generate.GenerationRequest;
import java.util.Arrays;

/**
 * What one request of the load saw: its tokens with the time each arrived (nanoseconds since the
 * load started; the tokens of one response message share its arrival time), and how it ended.
 *
 * @param stream the load's stream (0..N-1) that sent it
 * @param round the stream's request number (0, 1, ...)
 * @param startNanos when it was sent
 * @param endNanos when it completed or failed
 * @param error the gRPC status of a failed request ({@code UNAVAILABLE: ...}); null when it completed
 */
public record StreamRecord(int stream, int round, GenerationRequest request, int[] tokenIds, long[] arrivalNanos,
    long startNanos, long endNanos, String error) {

  public StreamRecord {
    tokenIds = tokenIds.clone();
    arrivalNanos = arrivalNanos.clone();
    if (tokenIds.length != arrivalNanos.length) {
      throw new IllegalArgumentException("one arrival time per token");
    }
  }

  public boolean failed() {
    return error != null;
  }

  /** {@code s3/r0}: stream 3, first request. */
  public String label() {
    return "s" + stream + "/r" + round;
  }

  /** Whether it was running at {@code nanos}: sent before, ended after. */
  public boolean runningAt(long nanos) {
    return startNanos <= nanos && endNanos > nanos;
  }

  /**
   * How these tokens differ from {@code expected}: null when identical, else a short description
   * (first differing position, and whether tokens are missing or extra).
   */
  public String difference(int[] expected) {
    if (Arrays.equals(tokenIds, expected)) {
      return null;
    }
    int n = Math.min(tokenIds.length, expected.length);
    int i = 0;
    while (i < n && tokenIds[i] == expected[i]) {
      i++;
    }
    if (i == n) {
      return tokenIds.length < expected.length
          ? (expected.length - tokenIds.length) + " token(s) missing at the end (got " + tokenIds.length + " of "
              + expected.length + ")"
          : (tokenIds.length - expected.length) + " extra token(s) at the end (got " + tokenIds.length + ", expected "
              + expected.length + ")";
    }
    return "token " + i + " is " + tokenIds[i] + ", expected " + expected[i] + " (got " + tokenIds.length
        + " tokens, expected " + expected.length + ")";
  }
}
