package io.moecluster.deploy.chaos;

import java.time.Duration;
import java.util.Objects;

/**
 * One fault of a schedule: what is done to which node, how long after the load started.
 *
 * @param at offset from the start of the load
 * @param node the node's name in the {@link ChaosCluster} ("expert-1", "router-1", ...)
 * @param pause how long a {@link Kind#PAUSE} lasts (SIGSTOP, then SIGCONT); zero otherwise
 */
public record Fault(Kind kind, String node, Duration at, Duration pause) {
  /** The kinds of fault the injector knows. */
  public enum Kind {
    /** SIGKILL (Process.destroyForcibly): the node dies without leaving the cluster. */
    KILL,
    /** SIGSTOP, then SIGCONT after the pause: the node hangs and comes back. */
    PAUSE,
    /** SIGKILL, then the same node spec started again; done when it is a member again. */
    RESTART
  }

  public Fault {
    Objects.requireNonNull(kind, "kind");
    Objects.requireNonNull(node, "node");
    if (at.isNegative()) {
      throw new IllegalArgumentException("a fault's offset must be >= 0, got " + at);
    }
    if (kind == Kind.PAUSE ? pause.isZero() || pause.isNegative() : !pause.isZero()) {
      throw new IllegalArgumentException("a pause fault needs a positive pause, the others none; got " + pause);
    }
  }

  /** {@code SIGKILL expert-1}, {@code SIGSTOP expert-1 for 3 s}, {@code restart expert-1}. */
  public String describe() {
    return switch (kind) {
      case KILL -> "SIGKILL " + node;
      case PAUSE -> "SIGSTOP " + node + " for " + pause.toMillis() / 1000.0 + " s, then SIGCONT";
      case RESTART -> "restart " + node + " (SIGKILL, start again)";
    };
  }
}
