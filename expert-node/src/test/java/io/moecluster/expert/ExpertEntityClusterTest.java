package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.tensor.DType;
import io.moecluster.proto.cluster.v1.Activations;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Locate;
import io.moecluster.proto.cluster.v1.Located;
import io.moecluster.proto.codec.ActivationCodec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A non-expert node asks an expert node's entities through Cluster Sharding, every message going
 * through the protobuf serializer: results are bit-identical to {@link ExpertFfn#forward}.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ExpertEntityClusterTest {
  private static final Duration ASK = Duration.ofSeconds(10);

  @TempDir static Path dir;
  static final List<ActorTestKit> kits = new ArrayList<>();
  static ExpertNode expertNode;
  static ActorTestKit client;
  static ActorTestKit expert;
  static ModelConfig config;

  @BeforeAll
  static void startCluster() {
    config = CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 7), dir);
    String model = "moe.expert.model-dir = \"" + dir.toString().replace("\\", "/") + "\"\nmoe.expert.compute-threads = 1";
    client = ActorTestKit.create("moe", TestClusters.nodeConfig("", model));
    kits.add(client);
    expert = ActorTestKit.create("moe", TestClusters.nodeConfig("expert", model));
    kits.add(expert);
    TestClusters.form(kits, Duration.ofSeconds(20));
    expertNode = ExpertNode.start(expert.system(), ExpertNodeSettings.fromConfig(expert.system().settings().config()));
    ExpertSharding.initProxy(client.system());
  }

  @AfterAll
  static void stopCluster() {
    TestClusters.stopAll(kits);
    if (expertNode != null) {
      expertNode.close();
    }
  }

  private static EntityRef<ExpertCommand> entity(int layer, int expert) {
    return ClusterSharding.get(client.system())
        .entityRefFor(ExpertEntity.TYPE_KEY, ExpertEntity.entityId(layer, expert));
  }

  private static ExpertReply compute(int layer, int expertIndex, Activations input) throws Exception {
    ActorRefResolver resolver = ActorRefResolver.get(client.system());
    return entity(layer, expertIndex).<ExpertReply>ask(replyTo -> ExpertCommand.newBuilder()
            .setCompute(ComputeExperts.newBuilder()
                .setStepId(42).setChunk(3).setLayer(layer).setExpert(expertIndex)
                .setInput(input)
                .setReplyTo(resolver.toSerializationFormat(replyTo)))
            .build(), ASK)
        .toCompletableFuture().get(15, TimeUnit.SECONDS);
  }

  @Test
  void computeIsBitIdenticalToTheLocalFfn() throws Exception {
    int hidden = config.hiddenSize();
    int rows = 5;
    Random random = new Random(1);
    float[] x = new float[rows * hidden];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    ExpertReply reply = compute(1, 2, ActivationCodec.encode(x, rows, hidden));
    assertEquals("", reply.getError());
    assertEquals(42, reply.getStepId());
    assertEquals(3, reply.getChunk());
    assertEquals(1, reply.getLayer());
    assertEquals(2, reply.getExpert());
    assertEquals(TestClusters.address(expert.system()), reply.getNode());
    assertTrue(reply.getComputeSeconds() >= 0);

    float[] expected;
    try (SafeTensors tensors = SafeTensors.open(dir); VectorKernels kernels = KernelsFactory.create(2)) {
      expected = ExpertFfn.forward(kernels, new ExpertStore(tensors, config).expert(1, 2), x, rows);
    }
    float[] actual = ActivationCodec.decode(reply.getOutput());
    assertEquals(rows, reply.getOutput().getRows());
    assertEquals(expected.length, actual.length);
    for (int i = 0; i < expected.length; i++) {
      assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(actual[i]), "element " + i);
    }
  }

  @Test
  void locateAnswersWithTheHostingNode() throws Exception {
    TestProbe<Located> probe = client.createTestProbe(Located.class);
    String replyTo = ActorRefResolver.get(client.system()).toSerializationFormat(probe.getRef());
    entity(0, 3).tell(ExpertCommand.newBuilder().setLocate(Locate.newBuilder().setReplyTo(replyTo)).build());
    Located located = probe.receiveMessage(Duration.ofSeconds(15));
    assertEquals(0, located.getLayer());
    assertEquals(3, located.getExpert());
    assertEquals(TestClusters.address(expert.system()), located.getNode());
    assertTrue(located.getLoaded());
  }

  @Test
  void malformedRequestsGetAnErrorReply() throws Exception {
    int hidden = config.hiddenSize();
    // Three rows announced, two rows of data.
    Activations shortData = ActivationCodec.encode(new float[2 * hidden], 2, hidden).toBuilder().setRows(3).build();
    ExpertReply reply = compute(0, 1, shortData);
    assertFalse(reply.getError().isEmpty());
    assertTrue(reply.getError().contains("bytes"), reply.getError());
    assertFalse(reply.hasOutput());

    // Rows of the wrong width.
    Activations wrongWidth = Activations.newBuilder().setRows(1).setHidden(hidden + 1)
        .setData(ByteString.copyFrom(new byte[(hidden + 1) * 4])).build();
    reply = compute(0, 1, wrongWidth);
    assertTrue(reply.getError().contains("hidden size"), reply.getError());

    // An expert the model does not have.
    reply = compute(0, config.numExperts(), ActivationCodec.encode(new float[hidden], 1, hidden));
    assertTrue(reply.getError().contains("no weights"), reply.getError());

    // The entity keeps serving after bad requests.
    reply = compute(0, 1, ActivationCodec.encode(new float[hidden], 1, hidden));
    assertEquals("", reply.getError());
  }

  @Test
  void entityIdsRoundTrip() {
    assertEquals("3/17", ExpertEntity.entityId(3, 17));
    assertEquals(new ExpertEntity.Id(3, 17), ExpertEntity.parseEntityId("3/17"));
    assertEquals("3/17", ExpertEntity.entityId(3, 17, 0, 1));
    assertEquals("3/17#1", ExpertEntity.entityId(3, 17, 1, 2));
    assertEquals(new ExpertEntity.Id(3, 17, 1), ExpertEntity.parseEntityId("3/17#1"));
    assertEquals(new ExpertEntity.Id(3, 17, 0), ExpertEntity.parseEntityId("3/17#0"));
    for (String bad : new String[] {"", "3", "3/", "/4", "a/b", "-1/2", "1/2/3", "1/2#", "1/#2", "1/2#x", "1/2#-1"}) {
      assertThrows(IllegalArgumentException.class, () -> ExpertEntity.parseEntityId(bad), bad);
    }
  }
}
