package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.tensor.DType;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCall;
import io.moecluster.proto.cluster.v1.ExpertCallReply;
import io.moecluster.proto.codec.ActivationCodec;
import io.moecluster.proto.codec.DataFrames;
import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The expert node's data channel over a real socket, spoken to frame by frame: the computations
 * of the entities registered on the node, bit-identical to the FFN in one process; several calls
 * in one write all answered, matched by call id, and computed in one pass; a call for an entity
 * not on the node answered "not hosted"; a bad request answered with the entity's error; and a
 * peer that does not speak the protocol, or does not greet in time, disconnected.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ExpertDataServerTest {
  @TempDir Path dir;
  private SafeTensors tensors;
  private VectorKernels kernels;
  private VectorKernels nodeKernels;
  private CountingBackend backend;
  private ExecutorService pool;
  private ExpertWeightCache cache;
  private ExpertStore store;
  private ModelConfig config;
  private ExpertDataServer server;
  private EntityDirectory directory;

  @BeforeEach
  void start() {
    config = CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 3), dir);
    tensors = SafeTensors.open(dir);
    kernels = KernelsFactory.create(1);
    nodeKernels = KernelsFactory.create(2); // a pass shared out over two threads gives the bits of one
    backend = new CountingBackend(new CpuExpertBackend(nodeKernels));
    pool = Executors.newFixedThreadPool(2);
    store = new ExpertStore(tensors, config);
    cache = new ExpertWeightCache(store, ExpertWeightCache.allExpertBytes(store), pool, "data-test");
    ExpertEntity.NodeContext node =
        new ExpertEntity.NodeContext(store, cache, backend, pool, "node-a");
    directory = new EntityDirectory();
    for (int e = 0; e < config.numExperts(); e++) {
      String id = ExpertEntity.entityId(1, e);
      directory.register(id, new ExpertComputation(node, id, ExpertEntity.parseEntityId(id), store.expert(1, e)));
    }
    server = ExpertDataServer.start("127.0.0.1", 0, "127.0.0.1", directory, "node-a");
  }

  @AfterEach
  void stop() throws InterruptedException {
    server.close();
    cache.close();
    pool.shutdown();
    assertTrue(pool.awaitTermination(30, TimeUnit.SECONDS));
    kernels.close();
    nodeKernels.close();
    tensors.close();
  }

  /** A connected, greeted client. */
  private final class Client implements AutoCloseable {
    final Socket socket;
    final DataInputStream in;
    final OutputStream out;

    Client() throws IOException {
      this(server.endpoint());
    }

    Client(String endpoint) throws IOException {
      String[] hostPort = endpoint.split(":");
      socket = new Socket(hostPort[0], Integer.parseInt(hostPort[1]));
      socket.setSoTimeout(20_000);
      in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
      out = socket.getOutputStream();
      out.write(DataFrames.GREETING);
      DataFrames.expectGreeting(in);
    }

    /** Writes all the calls in one write, as a router does for one layer's calls to a node. */
    void send(ExpertCall... calls) throws IOException {
      ByteArrayOutputStream bytes = new ByteArrayOutputStream();
      for (ExpertCall c : calls) {
        DataFrames.write(bytes, c);
      }
      out.write(bytes.toByteArray());
      out.flush();
    }

    ExpertCallReply read() throws IOException {
      return DataFrames.read(in, ExpertCallReply.parser());
    }

    @Override
    public void close() throws IOException {
      socket.close();
    }
  }

  private float[] input(int rows, long seed) {
    Random r = new Random(seed);
    float[] x = new float[rows * config.hiddenSize()];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) r.nextGaussian();
    }
    return x;
  }

  private ExpertCall call(long id, String entity, int layer, int expert, float[] x, int rows) {
    return ExpertCall.newBuilder().setCallId(id).setEntityId(entity)
        .setCompute(ComputeExperts.newBuilder().setStepId(100 + id).setLayer(layer).setExpert(expert)
            .setInput(ActivationCodec.encode(x, rows, config.hiddenSize())))
        .build();
  }

  @Test
  void callsSentTogetherAreAllAnsweredBitIdenticalToTheFfn() throws IOException {
    try (Client client = new Client()) {
      Map<Long, float[]> expected = new HashMap<>();
      ExpertCall[] calls = new ExpertCall[config.numExperts()];
      for (int e = 0; e < calls.length; e++) {
        int rows = 1 + e;
        float[] x = input(rows, e);
        calls[e] = call(e + 1, ExpertEntity.entityId(1, e), 1, e, x, rows);
        expected.put(e + 1L, ExpertFfn.forward(kernels, store.expert(1, e), x, rows));
      }
      client.send(calls);
      for (int i = 0; i < calls.length; i++) {
        ExpertCallReply r = client.read();
        float[] want = expected.remove(r.getCallId());
        assertTrue(want != null, "unexpected or repeated call id " + r.getCallId());
        assertFalse(r.getNotHosted());
        assertEquals("", r.getReply().getError());
        assertEquals(100 + r.getCallId(), r.getReply().getStepId());
        assertEquals("node-a", r.getReply().getNode());
        assertArrayEquals(want, ActivationCodec.decode(r.getReply().getOutput()), "call " + r.getCallId());
      }
      assertTrue(expected.isEmpty());
    }
  }

  /**
   * The calls a router writes together (a layer's calls to this node) are computed in one pass of
   * the node's kernels, not one by one: the backend sees them in at most two batches (the bytes
   * may arrive in two reads), every call answered once, once their weights are in the node's cache.
   * A call sent later is a pass of its own.
   */
  @Test
  void callsSentTogetherAreComputedInOnePass() throws IOException {
    try (Client client = new Client()) {
      ExpertCall[] calls = new ExpertCall[config.numExperts()];
      for (int e = 0; e < calls.length; e++) {
        calls[e] = call(e + 1, ExpertEntity.entityId(1, e), 1, e, input(2, 20 + e), 2);
      }
      // The first round loads the weights (this cache waits for its loads): each call runs alone.
      for (int round = 0; round < 2; round++) {
        backend.passes.clear();
        client.send(calls);
        java.util.Set<Long> answered = new java.util.HashSet<>();
        for (int i = 0; i < calls.length; i++) {
          ExpertCallReply r = client.read();
          assertEquals("", r.getReply().getError());
          assertTrue(answered.add(r.getCallId()), "call " + r.getCallId() + " answered twice");
        }
        assertEquals(calls.length, answered.size());
      }
      assertEquals(calls.length, backend.passes.stream().mapToInt(Integer::intValue).sum(), "each call computed once");
      assertTrue(backend.passes.size() <= 2, "in one pass (two if the bytes came in two reads): " + backend.passes);

      backend.passes.clear();
      client.send(call(99, ExpertEntity.entityId(1, 0), 1, 0, input(1, 30), 1));
      assertEquals(99, client.read().getCallId(), "the next reply is the new call's, not a second answer");
      assertEquals(List.of(1), backend.passes);
    }
  }

  /**
   * Calls read but not yet computed when their connection breaks (here: a frame cut off) give
   * their weights back: a cache with room for one expert can then load another. Were the lease
   * kept, the next expert could not evict the first and would run cold instead of loading.
   */
  @Test
  void callsOfABrokenConnectionGiveTheirWeightsBack() throws Exception {
    ExpertWeightCache small = new ExpertWeightCache(store, store.expert(1, 0).byteSize(), pool, "data-test-small");
    ExpertEntity.NodeContext node = new ExpertEntity.NodeContext(store, small, backend, pool, "node-small");
    EntityDirectory entities = new EntityDirectory();
    for (int e = 0; e < 2; e++) {
      String id = ExpertEntity.entityId(1, e);
      entities.register(id, new ExpertComputation(node, id, ExpertEntity.parseEntityId(id), store.expert(1, e)));
    }
    ExpertDataServer one = ExpertDataServer.start("127.0.0.1", 0, "127.0.0.1", entities, "node-small");
    try (Client router = new Client(one.endpoint())) {
      router.send(call(1, ExpertEntity.entityId(1, 0), 1, 0, input(1, 40), 1));
      assertEquals("", router.read().getReply().getError());
      assertEquals(1, small.loads(), "expert 1/0 loaded");

      Client broken = new Client(one.endpoint());
      String port = ":" + broken.socket.getLocalPort();
      ByteArrayOutputStream bytes = new ByteArrayOutputStream();
      DataFrames.write(bytes, call(2, ExpertEntity.entityId(1, 0), 1, 0, input(1, 41), 1));
      bytes.write(new byte[] {0, 0, 1}); // the start of a frame that never comes whole
      broken.out.write(bytes.toByteArray());
      broken.out.flush();
      broken.close();
      TestClusters.await(Duration.ofSeconds(10), "the broken connection's reader ended", () -> Thread
          .getAllStackTraces().keySet().stream()
          .noneMatch(t -> t.getName().startsWith("moe-data-channel-") && t.getName().endsWith(port)));

      router.send(call(3, ExpertEntity.entityId(1, 1), 1, 1, input(1, 42), 1));
      assertEquals("", router.read().getReply().getError());
      assertEquals(2, small.loads(), "expert 1/1 loaded in place of 1/0, whose lease was given back");
    } finally {
      one.close();
      small.close();
    }
  }

  /** The CPU backend, counting the calls of each pass the node hands it. */
  private static final class CountingBackend implements ExpertBackend {
    final List<Integer> passes = new CopyOnWriteArrayList<>();
    private final CpuExpertBackend cpu;

    CountingBackend(CpuExpertBackend cpu) {
      this.cpu = cpu;
    }

    @Override
    public String description() {
      return "counting " + cpu.description();
    }

    @Override
    public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
      passes.add(1);
      return cpu.forward(layer, expert, weights, x, rows);
    }

    @Override
    public List<CompletableFuture<float[]>> forwardAll(int[] layers, int[] experts, ExpertWeights[] weights,
        float[][] xs, int[] rows) {
      passes.add(layers.length);
      return cpu.forwardAll(layers, experts, weights, xs, rows);
    }

    @Override
    public void close() {}
  }

  @Test
  void hintsReachTheCacheAndAreNotAnswered() throws IOException {
    var received = ExpertMetrics.prefetchReceived().labelValues("data-test");
    double before = received.get();
    try (Client client = new Client()) {
      float[] x = input(1, 4);
      client.send(
          ExpertCall.newBuilder().setEntityId(ExpertEntity.entityId(1, 2)).setPrefetch(true).build(),
          ExpertCall.newBuilder().setEntityId(ExpertEntity.entityId(0, 2)).setPrefetch(true).build(), // not here
          call(5, ExpertEntity.entityId(1, 1), 1, 1, x, 1));
      ExpertCallReply r = client.read();
      assertEquals(5, r.getCallId(), "the first reply is the call's: hints get none");
      assertArrayEquals(ExpertFfn.forward(kernels, store.expert(1, 1), x, 1),
          ActivationCodec.decode(r.getReply().getOutput()));
    }
    assertEquals(before + 1, received.get(), "the hosted entity's hint reached the cache");
  }

  @Test
  void anEntityNotOnTheNodeIsAnsweredNotHosted() throws IOException {
    try (Client client = new Client()) {
      client.send(call(9, ExpertEntity.entityId(0, 1), 0, 1, input(1, 1), 1));
      ExpertCallReply r = client.read();
      assertEquals(9, r.getCallId());
      assertTrue(r.getNotHosted());
      assertFalse(r.hasReply());
    }
  }

  @Test
  void aBadRequestGetsTheEntitysErrorAndTheConnectionGoesOn() throws IOException {
    try (Client client = new Client()) {
      // names entity 1/0 but asks for expert 1/1
      client.send(call(1, ExpertEntity.entityId(1, 0), 1, 1, input(1, 2), 1));
      ExpertCallReply r = client.read();
      assertTrue(r.getReply().getError().contains("reached entity 1/0"), r.getReply().getError());
      float[] x = input(2, 3);
      client.send(call(2, ExpertEntity.entityId(1, 0), 1, 0, x, 2));
      ExpertCallReply ok = client.read();
      assertEquals(2, ok.getCallId());
      assertArrayEquals(ExpertFfn.forward(kernels, store.expert(1, 0), x, 2),
          ActivationCodec.decode(ok.getReply().getOutput()));
    }
  }

  @Test
  void aPeerThatDoesNotSpeakTheProtocolIsDisconnected() throws IOException {
    String[] hostPort = server.endpoint().split(":");
    try (Socket s = new Socket(hostPort[0], Integer.parseInt(hostPort[1]))) {
      s.setSoTimeout(10_000);
      s.getOutputStream().write("GET / HTTP/1.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
      assertEquals(-1, s.getInputStream().read(), "closed without an answer");
    }
    try (Client client = new Client()) {
      // a frame length far beyond the limit: the node closes rather than allocating it
      client.out.write(new byte[] {0x7f, 0, 0, 0});
      client.out.flush();
      assertNull(client.read(), "closed");
    }
  }

  /**
   * A peer that connects and never greets (a port scan, a stuck client) is disconnected after the
   * greeting timeout, and its reader thread ends; a router that greeted may then stay idle past it.
   */
  @Test
  void aPeerThatNeverGreetsIsDisconnectedAndItsThreadFreed() throws Exception {
    Duration greeting = Duration.ofMillis(300);
    ExpertDataServer strict = ExpertDataServer.start("127.0.0.1", 0, "127.0.0.1", directory, "node-strict",
        greeting);
    String[] hostPort = strict.endpoint().split(":");
    try (Socket silent = new Socket(hostPort[0], Integer.parseInt(hostPort[1]));
        Client router = new Client(strict.endpoint())) {
      silent.setSoTimeout(10_000);
      String port = ":" + silent.getLocalPort(); // its reader is "moe-data-channel-/127.0.0.1:<port>"
      assertEquals(-1, silent.getInputStream().read(), "closed without an answer");
      TestClusters.await(Duration.ofSeconds(10), "the silent peer's reader ended", () -> Thread.getAllStackTraces()
          .keySet().stream().noneMatch(t -> t.getName().startsWith("moe-data-channel-") && t.getName().endsWith(port)));

      Thread.sleep(2 * greeting.toMillis()); // idle between requests: no read timeout after the greeting
      float[] x = input(1, 7);
      router.send(call(1, ExpertEntity.entityId(1, 0), 1, 0, x, 1));
      assertArrayEquals(ExpertFfn.forward(kernels, store.expert(1, 0), x, 1),
          ActivationCodec.decode(router.read().getReply().getOutput()));
    } finally {
      strict.close();
    }
  }

  @Test
  void aPortInUseIsAClearStartUpError() {
    int port = Integer.parseInt(server.endpoint().split(":")[1]);
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> ExpertDataServer.start(
        "127.0.0.1", port, "127.0.0.1", new EntityDirectory(), "node-b"));
    assertTrue(e.getMessage().contains("127.0.0.1:" + port) && e.getMessage().contains("moe.expert.data-channel.port"),
        e.getMessage());
  }

  @Test
  void aNodeWithArteryOnTlsServesNoPlaintextDataChannel() {
    var tls = com.typesafe.config.ConfigFactory.parseString("pekko.remote.artery.transport = tls-tcp");
    var tcp = com.typesafe.config.ConfigFactory.parseString("pekko.remote.artery.transport = tcp");
    assertTrue(ExpertNode.dataChannelRefusal(tls).contains("tls-tcp"));
    assertNull(ExpertNode.dataChannelRefusal(tcp));
  }

  @Test
  void aReaderOfATruncatedFrameFailsClearly() {
    byte[] truncated = {0, 0, 0, 10, 1, 2};
    IOException e = assertThrows(IOException.class, () -> DataFrames.read(
        new DataInputStream(new java.io.ByteArrayInputStream(truncated)), ExpertCallReply.parser()));
    assertTrue(e instanceof java.io.EOFException, e.toString());
  }
}
