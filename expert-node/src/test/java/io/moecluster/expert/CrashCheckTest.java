package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.expert.CrashCheck.Probe;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.Address;
import org.apache.pekko.cluster.UniqueAddress;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class CrashCheckTest {
  private static final CrashCheck.Settings SETTINGS =
      new CrashCheck.Settings(true, Duration.ofMillis(300), 2, Duration.ofMillis(150));
  private static final UniqueAddress SELF = node(25520, 1);
  private static final UniqueAddress VICTIM = node(25521, 7);

  private static UniqueAddress node(int port, long uid) {
    return UniqueAddress.apply(new Address("pekko", "moe", "127.0.0.1", port), uid);
  }

  /** A cluster view: {@code live} is the incarnation at the victim's address (null: none). */
  private static final class FakeView implements CrashCheck.View {
    UniqueAddress live = VICTIM;
    int members = 3;
    int reachable = 3;

    @Override
    public UniqueAddress self() {
      return SELF;
    }

    @Override
    public UniqueAddress live(UniqueAddress target) {
      return target.address().equals(VICTIM.address()) ? live : null;
    }

    @Override
    public int members() {
      return members;
    }

    @Override
    public int reachable() {
      return reachable;
    }
  }

  /** Answers the given results in order and records the sleeps between probes. */
  private static final class FakeProber implements CrashCheck.Prober {
    final Deque<Probe> answers;
    final List<String> probed = new ArrayList<>();

    FakeProber(Probe... answers) {
      this.answers = new ArrayDeque<>(List.of(answers));
    }

    @Override
    public Probe probe(String host, int port, Duration timeout) {
      probed.add(host + ":" + port);
      return answers.removeFirst();
    }
  }

  private static CrashCheck.Decision decide(FakeProber prober, FakeView view, List<Duration> sleeps)
      throws InterruptedException {
    return new CrashCheck(SETTINGS, prober, sleeps::add).decide(VICTIM, view);
  }

  @Test
  void refusedTwiceIsDowned() throws Exception {
    FakeProber prober = new FakeProber(Probe.REFUSED, Probe.REFUSED);
    List<Duration> sleeps = new ArrayList<>();
    CrashCheck.Decision d = decide(prober, new FakeView(), sleeps);
    assertTrue(d.down(), d.reason());
    assertEquals(List.of("127.0.0.1:25521", "127.0.0.1:25521"), prober.probed);
    assertEquals(List.of(Duration.ofMillis(150)), sleeps);
  }

  @Test
  void theFirstRefusalIsToldBeforeTheConfirmations() throws Exception {
    FakeProber prober = new FakeProber(Probe.REFUSED, Probe.REFUSED);
    List<String> told = new ArrayList<>();
    CrashCheck.Decision d = new CrashCheck(SETTINGS, prober, x -> told.add("slept " + prober.probed.size()))
        .decide(VICTIM, new FakeView(), t -> told.add("refused " + prober.probed.size()));
    assertTrue(d.down(), d.reason());
    assertEquals(List.of("refused 1", "slept 1"), told, "told once, after the first probe");
    List<String> none = new ArrayList<>();
    new CrashCheck(SETTINGS, new FakeProber(Probe.ACCEPTED), x -> {}).decide(VICTIM, new FakeView(), t -> none.add("refused"));
    new CrashCheck(SETTINGS, new FakeProber(Probe.UNKNOWN), x -> {}).decide(VICTIM, new FakeView(), t -> none.add("refused"));
    assertEquals(List.of(), none, "an open or silent port is not a refusal");
  }

  @Test
  void refusedOnceThenAcceptedIsNotDowned() throws Exception {
    CrashCheck.Decision d = decide(new FakeProber(Probe.REFUSED, Probe.ACCEPTED), new FakeView(), new ArrayList<>());
    assertFalse(d.down());
    assertTrue(d.reason().contains("accepts"), d.reason());
  }

  @Test
  void aTimeoutIsLeftToTheResolver() throws Exception {
    FakeProber prober = new FakeProber(Probe.UNKNOWN);
    CrashCheck.Decision d = decide(prober, new FakeView(), new ArrayList<>());
    assertFalse(d.down());
    assertTrue(d.reason().contains("split brain resolver"), d.reason());
    assertEquals(1, prober.probed.size(), "no second probe after an unknown answer");
  }

  @Test
  void theMinoritySideDownsNobody() throws Exception {
    FakeView view = new FakeView();
    view.members = 4;
    view.reachable = 2; // half is not a majority
    CrashCheck.Decision d = decide(new FakeProber(Probe.REFUSED, Probe.REFUSED), view, new ArrayList<>());
    assertFalse(d.down());
    assertTrue(d.reason().contains("majority"), d.reason());
  }

  @Test
  void aNewIncarnationIsNotDowned() throws Exception {
    FakeView view = new FakeView();
    view.live = node(25521, 8); // restarted on the same port
    FakeProber prober = new FakeProber();
    CrashCheck.Decision d = decide(prober, view, new ArrayList<>());
    assertFalse(d.down());
    assertTrue(prober.probed.isEmpty(), "not even probed");
  }

  @Test
  void aRestartDuringTheProbesIsNotDowned() throws Exception {
    FakeView view = new FakeView();
    CrashCheck.Prober prober = new CrashCheck.Prober() {
      int calls;

      @Override
      public Probe probe(String host, int port, Duration timeout) {
        if (++calls == 2) {
          view.live = node(25521, 9); // the old incarnation was removed and a new one joined
        }
        return Probe.REFUSED;
      }
    };
    CrashCheck.Decision d = new CrashCheck(SETTINGS, prober, x -> {}).decide(VICTIM, view);
    assertFalse(d.down(), d.reason());
  }

  @Test
  void neverItself() throws Exception {
    CrashCheck.Decision d = new CrashCheck(SETTINGS, new FakeProber(), x -> {}).decide(SELF, new FakeView());
    assertFalse(d.down());
  }

  @Test
  void badSettingsAreRefused() {
    assertThrows(IllegalArgumentException.class, () -> new CrashCheck.Settings(true, Duration.ZERO, 2, Duration.ZERO));
    assertThrows(IllegalArgumentException.class,
        () -> new CrashCheck.Settings(true, Duration.ofMillis(300), 0, Duration.ZERO));
  }

  @Test
  void aClosedPortIsRefused() throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    assertEquals(Probe.REFUSED, CrashCheck.tcpProbe("127.0.0.1", port, Duration.ofMillis(300)));
  }

  /**
   * A paused process (SIGSTOP) still has its port: the kernel accepts connections for it and
   * nothing answers. The real prober must not take it for a crash.
   */
  @Test
  void aListeningButSilentPortIsNotDowned() throws Exception {
    try (ServerSocket silent = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
      List<Socket> held = new java.util.concurrent.CopyOnWriteArrayList<>();
      Thread acceptor = Thread.ofPlatform().daemon().start(() -> {
        try {
          while (true) {
            held.add(silent.accept()); // accepted, never read nor answered
          }
        } catch (IOException closed) {
          // the test is over
        }
      });
      UniqueAddress target = node(silent.getLocalPort(), 7);
      CrashCheck.View atSilent = new CrashCheck.View() {
        @Override
        public UniqueAddress self() {
          return SELF;
        }

        @Override
        public UniqueAddress live(UniqueAddress t) {
          return t.equals(target) ? target : null;
        }

        @Override
        public int members() {
          return 3;
        }

        @Override
        public int reachable() {
          return 3;
        }
      };
      CrashCheck.Decision d = new CrashCheck(SETTINGS, CrashCheck::tcpProbe, x -> Thread.sleep(x.toMillis()))
          .decide(target, atSilent);
      assertFalse(d.down(), d.reason());
      assertTrue(d.reason().contains("accepts"), d.reason());
      silent.close();
      acceptor.join(5_000);
      for (Socket s : held) {
        s.close();
      }
    }
  }
}
