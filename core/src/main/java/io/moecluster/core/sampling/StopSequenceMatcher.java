package io.moecluster.core.sampling;

import java.util.ArrayList;
import java.util.List;

/**
 * Watches one sequence's streamed text for stop sequences. Fed each token's text delta, it returns
 * what may be shown to the client now and holds back any tail that could still grow into a stop
 * sequence, so a client never sees the start of a stop string that later completes. As in the
 * OpenAI API, the emitted text excludes the stop sequence and everything after it.
 *
 * <p>Not thread-safe: one instance per sequence, fed from the sequence's decode loop.
 */
public final class StopSequenceMatcher {

  /**
   * What {@link #feed} produced.
   *
   * @param text the text that is safe to emit now (possibly empty)
   * @param stopped whether a stop sequence has completed; no further text will be emitted
   */
  public record Result(String text, boolean stopped) {}

  private static final Result STOPPED = new Result("", true);

  private final List<String> stops;
  private final StringBuilder held = new StringBuilder();
  private boolean stopped;

  /** Empty strings are ignored: they would match everywhere and end every sequence at once. */
  public StopSequenceMatcher(List<String> stopSequences) {
    List<String> nonEmpty = new ArrayList<>();
    if (stopSequences != null) {
      for (String s : stopSequences) {
        if (s != null && !s.isEmpty()) {
          nonEmpty.add(s);
        }
      }
    }
    this.stops = List.copyOf(nonEmpty);
  }

  /** Whether a stop sequence has been seen. */
  public boolean stopped() {
    return stopped;
  }

  /** Takes the next text delta; returns what can be emitted and whether the sequence stopped. */
  public Result feed(String delta) {
    if (stopped) {
      return STOPPED;
    }
    held.append(delta);
    if (stops.isEmpty()) {
      return new Result(takeHeld(held.length()), false);
    }
    // Only the held text can contain a match start: anything emitted earlier had no suffix that
    // was a prefix of a stop sequence, so no stop sequence can straddle the emitted boundary.
    int stopAt = earliestMatch();
    if (stopAt >= 0) {
      stopped = true;
      String text = held.substring(0, stopAt);
      held.setLength(0);
      return new Result(text, true);
    }
    int keep = longestPartialMatchAtEnd();
    return new Result(takeHeld(held.length() - keep), false);
  }

  /**
   * Releases the held-back text when the sequence ends for another reason (EOS, length, cancel).
   * Returns "" after a stop sequence matched.
   */
  public String flush() {
    if (stopped) {
      return "";
    }
    return takeHeld(held.length());
  }

  private String takeHeld(int count) {
    String text = held.substring(0, count);
    held.delete(0, count);
    return text;
  }

  /** Start of the earliest complete stop sequence in the held text, or -1. */
  private int earliestMatch() {
    int best = -1;
    for (String stop : stops) {
      int at = held.indexOf(stop);
      if (at >= 0 && (best < 0 || at < best)) {
        best = at;
      }
    }
    return best;
  }

  /** Length of the longest suffix of the held text that is a proper prefix of a stop sequence. */
  private int longestPartialMatchAtEnd() {
    int longest = 0;
    int length = held.length();
    for (String stop : stops) {
      for (int k = Math.min(stop.length() - 1, length); k > longest; k--) {
        if (endsWithPrefix(stop, k, length)) {
          longest = k;
          break;
        }
      }
    }
    return longest;
  }

  private boolean endsWithPrefix(String stop, int k, int length) {
    int offset = length - k;
    for (int i = 0; i < k; i++) {
      if (held.charAt(offset + i) != stop.charAt(i)) {
        return false;
      }
    }
    return true;
  }
}
