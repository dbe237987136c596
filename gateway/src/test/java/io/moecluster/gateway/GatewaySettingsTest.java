package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.TokenizeRequest;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** reference.conf defaults, their checks, and a gateway on the in-process transport. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class GatewaySettingsTest {
  @Test
  void referenceDefaults() {
    GatewaySettings s = GatewaySettings.fromConfig(ConfigFactory.load());
    assertEquals(50051, s.grpcPort());
    assertEquals("", s.modelName());
    assertEquals(256, s.defaultMaxTokens());
    assertEquals(4096, s.maxMaxTokens());
    assertEquals(20, s.maxLogprobs());
    assertEquals(16, s.maxStopSequences());
    assertEquals(256, s.maxStopSequenceChars());
    assertEquals(4 * 1024 * 1024, s.maxInboundMessageBytes());
    assertEquals(Duration.ofSeconds(30), s.drainTimeout());
    assertEquals(Duration.ofSeconds(1), s.healthPollInterval());
    assertTrue(s.maxRunning() > 0 && s.maxQueued() >= 0);
  }

  @Test
  void badValuesNameTheKey() {
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () -> GatewayFixture.settings("default-max-tokens = 5000"));
    assertTrue(e.getMessage().contains("moe.gateway.default-max-tokens"), e.getMessage());
    e =
        assertThrows(
            IllegalArgumentException.class, () -> GatewayFixture.settings("max-running = 0"));
    assertTrue(e.getMessage().contains("moe.gateway.max-running"), e.getMessage());
    e =
        assertThrows(
            IllegalArgumentException.class,
            () -> GatewayFixture.settings("max-stop-sequence-chars = 0"));
    assertTrue(e.getMessage().contains("moe.gateway.max-stop-sequence-chars"), e.getMessage());
  }

  @Test
  void runsOnTheInProcessTransport() {
    ActorTestKit kit = ActorTestKit.create();
    String name = InProcessServerBuilder.generateName();
    try (GatewayServer server =
        GatewayServer.start(
            kit.system(),
            GatewayFixture.settings("drain-timeout = 1s"),
            InProcessServerBuilder.forName(name),
            TestModel.tiny())) {
      assertEquals(-1, server.port());
      ManagedChannel channel = InProcessChannelBuilder.forName(name).build();
      try {
        var ids =
            InferenceGrpc.newBlockingStub(channel)
                .tokenize(TokenizeRequest.newBuilder().setText("hi").build())
                .getIdsList();
        assertTrue(!ids.isEmpty());
      } finally {
        channel.shutdownNow();
      }
    } finally {
      kit.shutdownTestKit();
    }
  }
}
