package io.moecluster.expert;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.function.Consumer;
import org.apache.pekko.cluster.UniqueAddress;

/**
 * Whether a suspected member's process has crashed: the decision of {@link CrashedNodeDowning},
 * kept free of the cluster so it can be tested with a fake prober and a fake view.
 *
 * <p>A crashed process (SIGKILL, OOM kill, segfault) leaves its host up and its cluster port
 * closed: a TCP connect is refused at once (the kernel answers RST). A paused process (SIGSTOP,
 * a long GC) still has its port open: the kernel completes the handshake and the connect
 * succeeds. A partitioned or powered-off host does not answer: the connect times out. Only a
 * refusal, seen {@code confirmations} times, counts as a crash; everything else is left to the
 * split brain resolver.
 */
public final class CrashCheck {
  /** What a TCP connect to a member's cluster port found. */
  public enum Probe {
    /** Connection refused: nothing listens there, the process is gone. */
    REFUSED,
    /** The port accepted the connection: the process (or something) is alive there. */
    ACCEPTED,
    /** A timeout, no route, unknown host...: nothing can be said. */
    UNKNOWN
  }

  /** Connects to a member's cluster port. */
  @FunctionalInterface
  public interface Prober {
    Probe probe(String host, int port, Duration timeout);
  }

  /** The cluster as this node sees it now. */
  public interface View {
    /** This node. */
    UniqueAddress self();

    /**
     * The incarnation that is a member at {@code target}'s address and not yet downed or
     * removed; null when there is none.
     */
    UniqueAddress live(UniqueAddress target);

    /** Members that count for the majority (as keep-majority counts them). */
    int members();

    /** Of those, the ones this node sees as reachable (itself included). */
    int reachable();
  }

  /** The settings of the check (moe.cluster.down-crashed-nodes, moe.cluster.crash-probe). */
  public record Settings(boolean enabled, Duration probeTimeout, int confirmations, Duration confirmInterval) {
    public Settings {
      if (probeTimeout.isNegative() || probeTimeout.isZero()) {
        throw new IllegalArgumentException("moe.cluster.crash-probe.timeout must be > 0, got " + probeTimeout);
      }
      if (confirmations < 1) {
        throw new IllegalArgumentException("moe.cluster.crash-probe.confirmations must be >= 1, got " + confirmations);
      }
      if (confirmInterval.isNegative()) {
        throw new IllegalArgumentException("moe.cluster.crash-probe.interval must be >= 0, got " + confirmInterval);
      }
    }
  }

  /** The outcome: down the member, or not, and why (logged). */
  public record Decision(boolean down, String reason) {
    static Decision keep(String reason) {
      return new Decision(false, reason);
    }
  }

  /** Sleeps between confirmations (a fake in tests). */
  @FunctionalInterface
  public interface Sleeper {
    void sleep(Duration d) throws InterruptedException;
  }

  private final Settings settings;
  private final Prober prober;
  private final Sleeper sleeper;

  public CrashCheck(Settings settings, Prober prober, Sleeper sleeper) {
    this.settings = settings;
    this.prober = prober;
    this.sleeper = sleeper;
  }

  /**
   * Probes {@code target} and decides. Blocks for up to {@code confirmations} probes and the
   * pauses between them: call it off any actor or engine thread.
   */
  public Decision decide(UniqueAddress target, View view) throws InterruptedException {
    return decide(target, view, t -> {});
  }

  /**
   * As {@link #decide(UniqueAddress, View)}, and tells {@code onFirstRefusal} as soon as the
   * first probe is refused, before the confirmations: a caller that only routes around the member
   * (no down) need not wait for them.
   */
  public Decision decide(UniqueAddress target, View view, Consumer<UniqueAddress> onFirstRefusal)
      throws InterruptedException {
    if (target.equals(view.self())) {
      return Decision.keep("it is this node");
    }
    if (!target.equals(view.live(target))) {
      return Decision.keep("it is no longer a live member (downed, removed or restarted)");
    }
    var host = target.address().host();
    var port = target.address().port();
    if (host.isEmpty() || port.isEmpty()) {
      return Decision.keep("its address has no host and port");
    }
    for (int i = 0; i < settings.confirmations(); i++) {
      if (i > 0) {
        sleeper.sleep(settings.confirmInterval());
      }
      Probe p = prober.probe(host.get(), (Integer) port.get(), settings.probeTimeout());
      if (p == Probe.ACCEPTED) {
        return Decision.keep("its port accepts connections (paused or slow, not crashed)");
      }
      if (p == Probe.UNKNOWN) {
        return Decision.keep("its port did not answer within " + settings.probeTimeout().toMillis()
            + " ms (a partition or a dead host: the split brain resolver decides)");
      }
      if (i == 0) {
        onFirstRefusal.accept(target);
      }
    }
    // Checked after the probes: the view may have changed meanwhile.
    if (!target.equals(view.live(target))) {
      return Decision.keep("it is no longer a live member (downed, removed or restarted)");
    }
    int members = view.members();
    int reachable = view.reachable();
    if (reachable * 2 <= members) {
      return Decision.keep("this node reaches only " + reachable + " of " + members
          + " members: not on the majority side");
    }
    return new Decision(true, "its port refused " + settings.confirmations() + " connection(s); this node reaches "
        + reachable + " of " + members + " members");
  }

  /** The real prober: a TCP connect; only "connection refused" is a refusal. */
  public static Probe tcpProbe(String host, int port, Duration timeout) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(host, port), (int) Math.max(1, timeout.toMillis()));
      return Probe.ACCEPTED;
    } catch (ConnectException e) {
      // "Connection refused"; a ConnectException with another message (e.g. a timeout on some
      // platforms) says nothing about the process.
      String m = e.getMessage();
      return m != null && m.toLowerCase(java.util.Locale.ROOT).contains("refused") ? Probe.REFUSED : Probe.UNKNOWN;
    } catch (IOException | RuntimeException e) {
      return Probe.UNKNOWN;
    }
  }
}
