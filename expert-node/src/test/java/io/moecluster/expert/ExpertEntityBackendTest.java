package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
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
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Prefetch;
import io.moecluster.proto.codec.ActivationCodec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The entity's compute path over a backend that answers from its own thread, as the GPU backend
 * does: the backend gets the cache's warm weights and the reply carries its output, a failed
 * computation is an error reply (and the entity goes on), and prefetch hints reach the backend.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ExpertEntityBackendTest {
  @TempDir Path dir;
  private ActorTestKit kit;
  private SafeTensors tensors;
  private VectorKernels kernels;
  private ExecutorService loader;
  private ExecutorService device;
  private ExpertWeightCache cache;
  private ModelConfig config;
  private ActorRef<ExpertCommand> entity;
  private final List<String> calls = new CopyOnWriteArrayList<>();
  private volatile boolean fail;
  private volatile boolean warmsOnHints;

  /** Computes like the CPU backend, but later and on its own "device" thread; records what it saw. */
  private final class AsyncBackend implements ExpertBackend {
    @Override
    public String description() {
      return "async";
    }

    @Override
    public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights w, float[] x, int rows) {
      return CompletableFuture.supplyAsync(() -> {
        calls.add("forward " + layer + "/" + expert + " on " + Thread.currentThread().getName()
            + (cache.isWarm(layer, expert) ? " warm" : " cold"));
        if (fail) {
          throw new IllegalStateException("CUDA_ERROR_LAUNCH_FAILED");
        }
        return ExpertFfn.forward(kernels, w, x, rows); // reads the leased weights from this thread
      }, device);
    }

    @Override
    public void prefetch(int layer, int expert, ExpertWeights weights) {
      calls.add("prefetch " + layer + "/" + expert);
    }

    @Override
    public boolean warmsOnHints() {
      return warmsOnHints;
    }

    @Override
    public void close() {}
  }

  @BeforeEach
  void start() {
    config = CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 5), dir);
    tensors = SafeTensors.open(dir);
    kernels = KernelsFactory.create(1);
    loader = Executors.newSingleThreadExecutor();
    device = Executors.newSingleThreadExecutor(r -> new Thread(r, "fake-gpu"));
    ExpertStore store = new ExpertStore(tensors, config);
    cache = new ExpertWeightCache(store, ExpertWeightCache.allExpertBytes(store), loader, "entity-backend-test");
    kit = ActorTestKit.create();
    ExpertEntity.NodeContext ctx = new ExpertEntity.NodeContext(store, cache, new AsyncBackend(), loader, "node-a");
    entity = kit.spawn(ExpertEntity.create(ctx, "1/2"));
  }

  @AfterEach
  void stop() throws InterruptedException {
    kit.shutdownTestKit();
    cache.close();
    device.shutdown();
    loader.shutdown();
    assertTrue(device.awaitTermination(5, TimeUnit.SECONDS));
    kernels.close();
    tensors.close();
  }

  private ExpertReply compute(float[] x, int rows) {
    return compute(entity, x, rows);
  }

  private ExpertReply compute(ActorRef<ExpertCommand> entity, float[] x, int rows) {
    TestProbe<ExpertReply> probe = kit.createTestProbe(ExpertReply.class);
    entity.tell(ExpertCommand.newBuilder().setCompute(ComputeExperts.newBuilder().setStepId(7).setLayer(1).setExpert(2)
        .setInput(ActivationCodec.encode(x, rows, config.hiddenSize()))
        .setReplyTo(ActorRefResolver.get(kit.system()).toSerializationFormat(probe.getRef()))).build());
    return probe.receiveMessage(Duration.ofSeconds(10));
  }

  private float[] input(int rows) {
    Random r = new Random(rows);
    float[] x = new float[rows * config.hiddenSize()];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) r.nextGaussian();
    }
    return x;
  }

  @Test
  void theReplyCarriesTheOutputComputedOnTheBackendsThread() {
    for (int pass = 0; pass < 2; pass++) { // a miss (load first), then a hit
      float[] x = input(3);
      ExpertReply reply = compute(x, 3);
      assertEquals("", reply.getError());
      assertEquals(7, reply.getStepId());
      float[] expected = ExpertFfn.forward(kernels, new ExpertStore(tensors, config).expert(1, 2), x, 3);
      assertArrayEquals(expected, ActivationCodec.decode(reply.getOutput()));
    }
    assertEquals(List.of("forward 1/2 on fake-gpu warm", "forward 1/2 on fake-gpu warm"), calls);
  }

  @Test
  void aRequestOfTheWrongShapeIsAnErrorReplyThatNoReplicaCanServe() {
    float[] x = new float[3];
    TestProbe<ExpertReply> probe = kit.createTestProbe(ExpertReply.class);
    entity.tell(ExpertCommand.newBuilder().setCompute(ComputeExperts.newBuilder().setStepId(7).setLayer(1).setExpert(2)
        .setInput(ActivationCodec.encode(x, 1, 3))
        .setReplyTo(ActorRefResolver.get(kit.system()).toSerializationFormat(probe.getRef()))).build());
    ExpertReply reply = probe.receiveMessage(Duration.ofSeconds(10));
    assertTrue(reply.getError().contains("hidden size"), reply.getError());
    assertFalse(reply.getNodeFault());
  }

  @Test
  void aFailedComputationIsAnErrorReply() {
    fail = true;
    ExpertReply reply = compute(input(1), 1);
    assertTrue(reply.getError().contains("expert 1/2 failed"), reply.getError());
    assertTrue(reply.getError().contains("CUDA_ERROR_LAUNCH_FAILED"), reply.getError());
    assertNotEquals("", reply.getError());
    assertTrue(reply.getNodeFault(), "a failed backend is the node's fault: another replica may serve it");
    fail = false;
    assertEquals("", compute(input(1), 1).getError(), "the entity goes on serving");
  }

  @Test
  void prefetchHintsReachTheBackend() throws Exception {
    entity.tell(ExpertCommand.newBuilder().setPrefetch(Prefetch.newBuilder().setLayer(1).addExperts(2)).build());
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (!calls.contains("prefetch 1/2") && System.nanoTime() < deadline) {
      Thread.sleep(10);
    }
    assertEquals(List.of("prefetch 1/2"), calls);
  }

  @Test
  void aReplySaysTheExpertStaysWarmOnlyWhereNoHintCouldHelp() {
    ExpertReply reply = compute(input(2), 2);
    assertEquals("", reply.getError());
    assertTrue(reply.getStaysWarm(), "warm, in a cache that holds every expert, on a backend with no copy of its own");
    warmsOnHints = true; // a GPU's device memory: a hint still uploads
    assertFalse(compute(input(2), 2).getStaysWarm());
    warmsOnHints = false;
    // A cache one byte short of the model: a warm expert may be evicted later, so hints still help.
    ExpertStore store = new ExpertStore(tensors, config);
    try (ExpertWeightCache small = new ExpertWeightCache(store, ExpertWeightCache.allExpertBytes(store) - 1, loader,
        "entity-backend-test-small")) {
      ExpertEntity.NodeContext ctx = new ExpertEntity.NodeContext(store, small, new AsyncBackend(), loader, "node-b");
      ActorRef<ExpertCommand> other = kit.spawn(ExpertEntity.create(ctx, "1/2"));
      ExpertReply fromSmall = compute(other, input(2), 2);
      assertEquals("", fromSmall.getError());
      assertTrue(small.isWarm(1, 2), "the expert is warm there too");
      assertFalse(fromSmall.getStaysWarm());
      kit.stop(other);
    }
  }

  @Test
  void aComputationFromTheColdMappedBytesDoesNotSayItStaysWarm() throws Exception {
    // on-miss = run-cold: the first miss computes from the mapped checkpoint while a load runs.
    ExpertStore store = new ExpertStore(tensors, config);
    ExecutorService slowLoader = Executors.newSingleThreadExecutor();
    CompletableFuture<Void> loadMayRun = new CompletableFuture<>();
    slowLoader.execute(loadMayRun::join); // holds the background load back until the first reply is in
    try (ExpertWeightCache cold = new ExpertWeightCache(store, ExpertWeightCache.allExpertBytes(store), slowLoader,
        "entity-backend-test-cold", CacheMissPolicy.RUN_COLD, 1)) {
      ExpertEntity.NodeContext ctx = new ExpertEntity.NodeContext(store, cold, new AsyncBackend(), loader, "node-c");
      ActorRef<ExpertCommand> other = kit.spawn(ExpertEntity.create(ctx, "1/2"));
      ExpertReply first = compute(other, input(2), 2);
      assertEquals("", first.getError());
      assertFalse(first.getStaysWarm(), "computed from the cold mapped bytes");
      loadMayRun.complete(null);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (!cold.isWarm(1, 2) && System.nanoTime() < deadline) {
        Thread.sleep(10);
      }
      assertTrue(cold.isWarm(1, 2), "the background load finished");
      assertTrue(compute(other, input(2), 2).getStaysWarm(), "warm now, in a cache that holds every expert");
      kit.stop(other);
    } finally {
      loadMayRun.complete(null);
      slowLoader.shutdown();
    }
  }
}
