package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.moecluster.proto.cluster.v1.Activations;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCall;
import io.moecluster.proto.cluster.v1.ExpertCallReply;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.DataFrames;
import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The router's side of the expert data channel, against a peer that speaks the protocol frame by
 * frame (the expert node's side is ExpertDataServerTest; both together run in the cluster tests):
 * replies matched to calls in any order, nothing sent before a flush, "not hosted", a call left
 * unanswered past its timeout and a lost or refused connection as failures the router falls back
 * from, and a new connection after a failure; and who reads the replies: a caller that waits for
 * its calls reads them itself, the background reader what nobody waits for.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class ExpertDataChannelsTest {
  // Generous: a starved peer thread on a loaded machine must not fail a connect; the refused
  // endpoint stays refused for the whole test.
  private static final Duration LONG = Duration.ofSeconds(60); // a call's timeout that never passes in a test
  private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
  private final AtomicInteger cancelledTimeouts = new AtomicInteger();
  // A connect on loopback takes well under a millisecond; 2 s (not the router's 100 ms) keeps a
  // starved connect thread on a loaded machine from failing a call that expects a connection.
  private final ExpertDataChannels channels = new ExpertDataChannels(Duration.ofSeconds(10), Duration.ofSeconds(60),
      Duration.ofSeconds(2), (delay, task) -> {
        ScheduledFuture<?> f = timer.schedule(task, delay.toNanos(), TimeUnit.NANOSECONDS);
        return () -> {
          f.cancel(false);
          cancelledTimeouts.incrementAndGet();
        };
      });
  private final List<AutoCloseable> closeables = new ArrayList<>();

  @AfterEach
  void close() throws Exception {
    channels.close();
    timer.shutdownNow();
    for (AutoCloseable c : closeables) {
      c.close();
    }
  }

  /** A node's end: greets, then hands the calls of each connection to the test. */
  private final class Peer implements AutoCloseable {
    final ServerSocket server = new ServerSocket(0);
    final LinkedBlockingQueue<ExpertCall> calls = new LinkedBlockingQueue<>();
    final List<Socket> sockets = Collections.synchronizedList(new ArrayList<>());
    volatile OutputStream out;

    Peer() throws IOException {
      Thread t = new Thread(this::accept);
      t.setDaemon(true);
      t.start();
      closeables.add(this);
    }

    String endpoint() {
      return "127.0.0.1:" + server.getLocalPort();
    }

    private void accept() {
      while (!server.isClosed()) {
        try {
          Socket s = server.accept();
          sockets.add(s);
          DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream()));
          DataFrames.expectGreeting(in);
          out = s.getOutputStream();
          out.write(DataFrames.GREETING);
          for (ExpertCall c; (c = DataFrames.read(in, ExpertCall.parser())) != null; ) {
            calls.add(c);
          }
        } catch (IOException e) {
          // this connection was dropped by the test; take the next one
        }
      }
    }

    ExpertCall nextCall() throws InterruptedException {
      ExpertCall c = calls.poll(10, TimeUnit.SECONDS);
      assertTrue(c != null, "no call arrived");
      return c;
    }

    void reply(ExpertCallReply r) throws IOException {
      synchronized (this) {
        DataFrames.write(out, r);
        out.flush();
      }
    }

    void dropConnections() throws IOException {
      for (Socket s : sockets) {
        s.close();
      }
    }

    @Override
    public void close() throws IOException {
      server.close();
      dropConnections();
    }
  }

  private static ComputeExperts compute(long step) {
    return ComputeExperts.newBuilder().setStepId(step).setLayer(1).setExpert(2).build();
  }

  private static ExpertCallReply answer(ExpertCall c) {
    return ExpertCallReply.newBuilder().setCallId(c.getCallId())
        .setReply(ExpertReply.newBuilder().setStepId(c.getCompute().getStepId()).setNode("n")).build();
  }

  @Test
  void repliesAreMatchedToTheirCallsInAnyOrder() throws Exception {
    Peer peer = new Peer();
    CompletableFuture<ExpertReply> a = channels.call(peer.endpoint(), "1/2", compute(10), LONG);
    CompletableFuture<ExpertReply> b = channels.call(peer.endpoint(), "1/3", compute(11), LONG);
    assertEquals(null, peer.calls.poll(300, TimeUnit.MILLISECONDS), "nothing goes out before the flush");
    channels.flush();
    ExpertCall first = peer.nextCall();
    ExpertCall second = peer.nextCall();
    assertEquals("1/2", first.getEntityId());
    assertEquals("1/3", second.getEntityId());
    assertEquals(10, first.getCompute().getStepId());
    peer.reply(answer(second));
    peer.reply(answer(first));
    assertEquals(10, a.get(10, TimeUnit.SECONDS).getStepId());
    assertEquals(11, b.get(10, TimeUnit.SECONDS).getStepId());
    assertEquals(0, channels.inFlight());
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (cancelledTimeouts.get() < 2 && System.nanoTime() < deadline) {
      Thread.sleep(1); // the reader thread runs the completions' actions after get() returns
    }
    assertEquals(2, cancelledTimeouts.get(), "an answered call's timeout is cancelled");
  }

  @Test
  void hintsRideOnAnOpenConnectionAndNeverOpenOne() throws Exception {
    Peer peer = new Peer();
    assertTrue(!channels.hint(peer.endpoint(), "1/2"), "no connection yet: the caller sends it another way");
    CompletableFuture<ExpertReply> call = channels.call(peer.endpoint(), "1/3", compute(20), LONG);
    assertTrue(channels.hint(peer.endpoint(), "2/5"));
    channels.flush();
    ExpertCall first = peer.nextCall();
    ExpertCall hint = peer.nextCall();
    assertEquals("1/3", first.getEntityId());
    assertEquals("2/5", hint.getEntityId());
    assertTrue(hint.getPrefetch() && !hint.hasCompute() && hint.getCallId() == 0, hint.toString());
    peer.reply(answer(first));
    assertEquals(20, call.get(10, TimeUnit.SECONDS).getStepId());
    assertEquals(0, channels.inFlight(), "a hint waits for nothing");
  }

  @Test
  void aCallLeftUnansweredTimesOutAndTheConnectionStays() throws Exception {
    Peer peer = new Peer();
    long start = System.nanoTime();
    CompletableFuture<ExpertReply> silent = channels.call(peer.endpoint(), "1/2", compute(1), Duration.ofMillis(200));
    channels.flush();
    peer.nextCall(); // arrives, and is never answered (a paused node)
    ExecutionException e = assertThrows(ExecutionException.class, () -> silent.get(10, TimeUnit.SECONDS));
    long took = System.nanoTime() - start;
    assertInstanceOf(TimeoutException.class, e.getCause());
    assertTrue(e.getCause().getMessage().contains("no answer from " + peer.endpoint() + " in 200 ms"),
        e.getCause().getMessage());
    assertTrue(took >= TimeUnit.MILLISECONDS.toNanos(200), "failed after " + took / 1_000_000 + " ms");
    assertEquals(0, channels.inFlight(), "a timed-out call is no longer pending");

    CompletableFuture<ExpertReply> next = channels.call(peer.endpoint(), "1/2", compute(2), LONG);
    channels.flush();
    ExpertCall c = peer.nextCall();
    peer.reply(answer(c));
    assertEquals(2, next.get(10, TimeUnit.SECONDS).getStepId());
    assertEquals(1, peer.sockets.size(), "the same connection answers the next call");
  }

  @Test
  void notHostedFailsTheCallSoTheRouterGoesThroughSharding() throws Exception {
    Peer peer = new Peer();
    CompletableFuture<ExpertReply> f = channels.call(peer.endpoint(), "0/7", compute(1), LONG);
    channels.flush();
    ExpertCall c = peer.nextCall();
    peer.reply(ExpertCallReply.newBuilder().setCallId(c.getCallId()).setNotHosted(true).build());
    ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(10, TimeUnit.SECONDS));
    assertInstanceOf(ExpertDataChannels.NotHostedException.class, e.getCause());
    assertTrue(e.getCause().getMessage().contains("0/7"), e.getCause().getMessage());
  }

  @Test
  void aLostConnectionFailsItsCallsAndTheNextCallReconnects() throws Exception {
    Peer peer = new Peer();
    ExecutionException e = lostCall(peer, peer::dropConnections);
    assertInstanceOf(IOException.class, e.getCause());
    assertEquals(0, channels.inFlight());

    assertEquals(2, answeredCall(peer, 2));
  }

  /** How a test breaks a connection. */
  private interface Breaker {
    void run() throws IOException;
  }

  /** A call that reaches {@code peer}, whose connection {@code breaker} then breaks: its failure. */
  private ExecutionException lostCall(Peer peer, Breaker breaker) throws Exception {
    CompletableFuture<ExpertReply> lost = channels.call(peer.endpoint(), "1/2", compute(1), LONG);
    channels.flush();
    peer.nextCall();
    breaker.run();
    return assertThrows(ExecutionException.class, () -> lost.get(10, TimeUnit.SECONDS));
  }

  /** A call to {@code peer} that it answers: the step of the reply. */
  private long answeredCall(Peer peer, long step) throws Exception {
    CompletableFuture<ExpertReply> reply = channels.call(peer.endpoint(), "1/2", compute(step), LONG);
    channels.flush();
    ExpertCall c = peer.nextCall();
    assertEquals(step, c.getCompute().getStepId());
    peer.reply(answer(c));
    return reply.get(10, TimeUnit.SECONDS).getStepId();
  }

  @Test
  void aFailedConnectionIsDroppedSoNodesOnNewAddressesDoNotPileUp() throws Exception {
    Peer gone = new Peer();
    lostCall(gone, gone::close); // the pod is deleted; its replacement listens elsewhere
    assertEquals(2, answeredCall(new Peer(), 2));
    assertEquals(1, channels.connectionCount(), "only the replacement's connection is held");
  }

  @Test
  void aRefusedConnectionFailsAtOnceAndIsNotRetriedForAWhile() throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort(); // closed again: nothing listens there
    }
    String endpoint = "127.0.0.1:" + port;
    ExecutionException e = assertThrows(ExecutionException.class,
        () -> channels.call(endpoint, "1/2", compute(1), LONG).get(10, TimeUnit.SECONDS));
    assertTrue(e.getCause().getMessage().contains("cannot open the data channel to " + endpoint),
        e.getCause().getMessage());
    ExecutionException soon = assertThrows(ExecutionException.class,
        () -> channels.call(endpoint, "1/2", compute(2), LONG).get(10, TimeUnit.SECONDS));
    assertTrue(soon.getCause().getMessage().contains("could not be opened a moment ago"),
        soon.getCause().getMessage());
  }

  @Test
  void aHostThatDoesNotAnswerCostsACallAMomentNotTheConnectTimeout() throws Exception {
    // Its kernel completes the TCP handshake, and nothing more ever comes: as a frozen process, or
    // the router waiting out a connect to an address nobody holds any more.
    try (ServerSocket mute = new ServerSocket(0)) {
      String endpoint = "127.0.0.1:" + mute.getLocalPort();
      long start = System.nanoTime();
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> channels.call(endpoint, "1/2", compute(1), LONG).get(10, TimeUnit.SECONDS));
      long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      assertTrue(e.getCause().getMessage().contains("is still opening"), e.getCause().getMessage());
      assertTrue(millis < 5_000, "the call waited " + millis + " ms; the connect timeout is 10 s");
      // A second call joins the connect in progress instead of starting another.
      ExecutionException again = assertThrows(ExecutionException.class,
          () -> channels.call(endpoint, "1/2", compute(2), LONG).get(10, TimeUnit.SECONDS));
      assertTrue(again.getCause().getMessage().contains("is still opening"), again.getCause().getMessage());
    }
  }

  @Test
  void aPeerThatDoesNotGreetIsRefused() throws Exception {
    try (ServerSocket silent = new ServerSocket(0)) {
      Thread t = new Thread(() -> {
        try (Socket s = silent.accept()) {
          s.getOutputStream().write("HTTP/1.1 400 Bad Request\r\n\r\n".getBytes());
          s.getInputStream().read(new byte[64]);
        } catch (IOException ignored) {
          // done
        }
      });
      t.setDaemon(true);
      t.start();
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> channels.call("127.0.0.1:" + silent.getLocalPort(), "1/2", compute(1), LONG)
              .get(10, TimeUnit.SECONDS));
      assertTrue(e.getCause().getMessage().contains("does not speak the expert data channel protocol"),
          e.getCause().getMessage());
    }
  }

  /** Waits for {@code f} the way the router's engine does: reading the channels on this thread. */
  private <T> T awaitAsCaller(CompletableFuture<T> f) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!f.isDone() && System.nanoTime() < deadline) {
      if (!channels.awaitReplies(TimeUnit.MILLISECONDS.toNanos(100), f::isDone)) {
        Thread.sleep(1); // nothing pending on the channels: someone else completes it
      }
    }
    return f.get(0, TimeUnit.SECONDS);
  }

  /** The thread that completes {@code f}. */
  private static AtomicReference<Thread> completer(CompletableFuture<?> f) {
    AtomicReference<Thread> t = new AtomicReference<>();
    f.whenComplete((r, e) -> t.set(Thread.currentThread()));
    return t;
  }

  @Test
  void aCallerThatWaitsReadsItsOwnReplies() throws Exception {
    Peer peer = new Peer();
    channels.enter();
    try {
      CompletableFuture<ExpertReply> a = channels.call(peer.endpoint(), "1/2", compute(30), LONG);
      CompletableFuture<ExpertReply> b = channels.call(peer.endpoint(), "1/3", compute(31), LONG);
      AtomicReference<Thread> aBy = completer(a);
      AtomicReference<Thread> bBy = completer(b);
      channels.flush();
      peer.reply(answer(peer.nextCall()));
      peer.reply(answer(peer.nextCall()));
      assertEquals(30, awaitAsCaller(a).getStepId());
      assertEquals(31, awaitAsCaller(b).getStepId());
      assertEquals(Thread.currentThread(), aBy.get(), "the waiting caller read the reply");
      assertEquals(Thread.currentThread(), bBy.get());
      assertEquals(0, channels.inFlight());
      assertTrue(!channels.awaitReplies(TimeUnit.SECONDS.toNanos(10), () -> false),
          "nothing pending: it returns at once and says so");
    } finally {
      channels.leave();
    }
  }

  @Test
  void repliesLeftWhenTheCallerLeavesAreReadInTheBackground() throws Exception {
    Peer peer = new Peer();
    channels.enter();
    CompletableFuture<ExpertReply> late = channels.call(peer.endpoint(), "1/2", compute(40), LONG);
    AtomicReference<Thread> by = completer(late);
    channels.flush();
    ExpertCall c = peer.nextCall();
    channels.leave(); // a hedge's loser: its layer went on without it
    peer.reply(answer(c));
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (by.get() == null && System.nanoTime() < deadline) {
      Thread.sleep(1); // not get(): a thread in get() may run the completion's actions itself
    }
    assertEquals("moe-data-channels", by.get().getName());
    assertEquals(40, late.get(0, TimeUnit.SECONDS).getStepId());
  }

  @Test
  void aWaitingCallerIsWokenForWhatItWaitsForBesidesTheReplies() throws Exception {
    Peer peer = new Peer();
    channels.enter();
    try {
      channels.call(peer.endpoint(), "1/2", compute(50), LONG);
      channels.flush();
      peer.nextCall(); // never answered
      AtomicBoolean outcome = new AtomicBoolean();
      Thread other = new Thread(() -> {
        try {
          Thread.sleep(200);
        } catch (InterruptedException e) {
          return;
        }
        outcome.set(true); // say, an answer through sharding
        channels.wakeReader();
      });
      long start = System.nanoTime();
      other.start();
      while (!outcome.get() && System.nanoTime() - start < TimeUnit.SECONDS.toNanos(20)) {
        assertTrue(channels.awaitReplies(TimeUnit.SECONDS.toNanos(20), outcome::get));
      }
      long took = System.nanoTime() - start;
      assertTrue(outcome.get());
      assertTrue(took < TimeUnit.SECONDS.toNanos(10), "woken after " + took / 1_000_000 + " ms, not at the timeout");
      other.join();
    } finally {
      channels.leave();
    }
  }

  @Test
  void aCallerTakesTheChannelsOverFromTheBackgroundReader() throws Exception {
    Peer peer = new Peer();
    CompletableFuture<ExpertReply> unwaited = channels.call(peer.endpoint(), "1/2", compute(60), LONG);
    channels.flush();
    ExpertCall first = peer.nextCall(); // left pending: the background reader selects for it
    Thread.sleep(50);
    channels.enter();
    try {
      CompletableFuture<ExpertReply> mine = channels.call(peer.endpoint(), "1/3", compute(61), LONG);
      channels.flush();
      peer.reply(answer(peer.nextCall()));
      long start = System.nanoTime();
      assertEquals(61, awaitAsCaller(mine).getStepId());
      long took = System.nanoTime() - start;
      assertTrue(took < TimeUnit.SECONDS.toNanos(5), "took " + took / 1_000_000 + " ms");
      peer.reply(answer(first));
      assertEquals(60, awaitAsCaller(unwaited).getStepId());
    } finally {
      channels.leave();
    }
  }

  @Test
  void callsBeyond64KiBLeaveBeforeTheFlush() throws Exception {
    Peer peer = new Peer();
    ComputeExperts big = compute(80).toBuilder()
        .setInput(Activations.newBuilder().setRows(1).setHidden(20_000).setData(ByteString.copyFrom(new byte[80_000])))
        .build();
    CompletableFuture<ExpertReply> f = channels.call(peer.endpoint(), "1/2", big, LONG);
    ExpertCall c = peer.nextCall(); // no flush: a prefill layer's node starts while the rest are encoded
    assertEquals(80_000, c.getCompute().getInput().getData().size());
    peer.reply(answer(c));
    assertEquals(80, f.get(10, TimeUnit.SECONDS).getStepId());
  }

  @Test
  void aNodeThatStopsReadingNeverBlocksTheCaller() throws Exception {
    try (ServerSocket server = new ServerSocket(0)) {
      List<Socket> held = Collections.synchronizedList(new ArrayList<>());
      Thread t = new Thread(() -> {
        try {
          Socket s = server.accept(); // greets, then reads nothing more: a paused process
          held.add(s);
          DataFrames.expectGreeting(s.getInputStream());
          s.getOutputStream().write(DataFrames.GREETING);
        } catch (IOException ignored) {
          // the test failed elsewhere
        }
      });
      t.setDaemon(true);
      t.start();
      ComputeExperts big = compute(90).toBuilder()
          .setInput(Activations.newBuilder().setRows(1).setHidden(6 << 20).setData(ByteString.copyFrom(new byte[24 << 20])))
          .build();
      channels.enter();
      try {
        long start = System.nanoTime();
        CompletableFuture<ExpertReply> f = channels.call("127.0.0.1:" + server.getLocalPort(), "1/2", big,
            Duration.ofMillis(300));
        channels.flush();
        long queued = System.nanoTime() - start;
        assertTrue(queued < TimeUnit.SECONDS.toNanos(5), "the call and flush took " + queued / 1_000_000 + " ms");
        ExecutionException e = assertThrows(ExecutionException.class, () -> awaitAsCaller(f));
        assertInstanceOf(TimeoutException.class, e.getCause(), "it times out like any unanswered call");
      } finally {
        channels.leave();
        for (Socket s : held) {
          s.close();
        }
      }
    }
  }

  @Test
  void framesLargerThanTheSocketBuffersGoBothWays() throws Exception {
    Peer peer = new Peer();
    int bytes = 24 << 20; // more than loopback's socket buffers: the flush cannot write it at once
    byte[] data = new byte[bytes];
    for (int i = 0; i < bytes; i++) {
      data[i] = (byte) (i * 31);
    }
    ByteString payload = ByteString.copyFrom(data);
    ComputeExperts big = compute(70).toBuilder()
        .setInput(Activations.newBuilder().setRows(1).setHidden(bytes / 4).setData(payload)).build();
    channels.enter();
    try {
      CompletableFuture<ExpertReply> f = channels.call(peer.endpoint(), "1/2", big, LONG);
      channels.flush();
      CompletableFuture<ExpertCall> received = CompletableFuture.supplyAsync(() -> {
        try {
          return peer.nextCall();
        } catch (InterruptedException e) {
          throw new IllegalStateException(e);
        }
      });
      while (!received.isDone()) { // the rest is written by the thread that reads, as the socket drains
        channels.awaitReplies(TimeUnit.MILLISECONDS.toNanos(50), received::isDone);
      }
      ExpertCall c = received.get();
      assertEquals(payload, c.getCompute().getInput().getData(), "every byte arrived, in order");
      // From another thread: the peer's write blocks until this one reads.
      CompletableFuture<Void> replied = CompletableFuture.runAsync(() -> {
        try {
          peer.reply(ExpertCallReply.newBuilder().setCallId(c.getCallId()).setReply(ExpertReply.newBuilder()
              .setStepId(70).setOutput(c.getCompute().getInput())).build());
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
      });
      ExpertReply r = awaitAsCaller(f);
      replied.get(10, TimeUnit.SECONDS);
      assertEquals(payload, r.getOutput().getData(), "a reply larger than the read buffer");
    } finally {
      channels.leave();
    }
  }
}
