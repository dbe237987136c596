package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The channels of {@code local-cluster}, {@code demo} and {@code chaos} to the gateway they
 * started: with {@code $MOE_API_KEYS} exported, the gateway (which inherited it) requires a key,
 * and these calls must carry one.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class GatewaysTest {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  @Test
  void callsToALocallyStartedGatewayCarryTheFirstKeyOfItsVariable() throws Exception {
    List<String> seen = new CopyOnWriteArrayList<>();
    ServerInterceptor recorder = new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
          ServerCallHandler<Q, R> next) {
        String value = headers.get(AUTHORIZATION);
        seen.add(value == null ? "none" : value);
        return next.startCall(call, headers);
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))
        .addService(ServerInterceptors.intercept(new HealthStatusManager().getHealthService(), recorder))
        .build()
        .start();
    try {
      HostPort target = new HostPort("127.0.0.1", server.getPort());
      for (Map<String, String> env : List.of(Map.of("MOE_API_KEYS", "key-1, key-2"), Map.<String, String>of())) {
        ManagedChannel channel = Gateways.channel(target, env);
        try {
          assertEquals(ServingStatus.SERVING, Gateways.health(channel, Duration.ofSeconds(5)));
        } finally {
          Gateways.close(channel);
        }
      }
      assertEquals(List.of("Bearer key-1", "none"), seen);
    } finally {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
