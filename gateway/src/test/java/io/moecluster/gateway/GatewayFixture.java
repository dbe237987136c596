package io.moecluster.gateway;

import com.typesafe.config.ConfigFactory;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.moecluster.proto.v1.InferenceGrpc;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.typed.ActorSystem;

/** A gateway on a Netty server at port 0 and a plaintext channel to it over loopback. */
final class GatewayFixture implements AutoCloseable {
  final GatewayServer server;
  final ManagedChannel channel;

  private GatewayFixture(GatewayServer server, ManagedChannel channel) {
    this.server = server;
    this.channel = channel;
  }

  /** Test settings: short timeouts, fast health polling; {@code overrides} is HOCON. */
  static GatewaySettings settings(String overrides) {
    return GatewaySettings.fromConfig(
        ConfigFactory.parseString("moe.gateway {" + overrides + "}")
            .withFallback(
                ConfigFactory.parseString(
                    """
                    moe.gateway {
                      grpc-port = 0
                      max-running = 4
                      max-queued = 4
                      router-ask-timeout = 500ms
                      first-event-timeout = 5s
                      health-poll-interval = 100ms
                      drain-timeout = 2s
                    }
                    """))
            .withFallback(ConfigFactory.load()));
  }

  static GatewayFixture start(ActorSystem<?> system, GatewaySettings settings, Path model) {
    GatewayServer server =
        GatewayServer.start(system, settings, NettyServerBuilder.forPort(0), model);
    ManagedChannel channel =
        ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    return new GatewayFixture(server, channel);
  }

  InferenceGrpc.InferenceBlockingStub blocking() {
    return InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(20, TimeUnit.SECONDS);
  }

  InferenceGrpc.InferenceStub async() {
    return InferenceGrpc.newStub(channel);
  }

  static void await(String what, Duration timeout, BooleanSupplier condition) {
    Instant deadline = Instant.now().plus(timeout);
    while (!condition.getAsBoolean()) {
      if (Instant.now().isAfter(deadline)) {
        throw new AssertionError("timed out waiting for " + what);
      }
      TestClusters.sleep(10);
    }
  }

  @Override
  public void close() {
    channel.shutdownNow();
    server.shutdownGracefully(Duration.ofSeconds(1));
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
