package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A gateway that stops answering without closing its connection (a frozen process, a host lost
 * from the network) must fail the client's call, so that its failover can act, not leave it
 * waiting forever. A proxy between client and server stops passing bytes while a server stream is
 * open; the client's keepalive pings go unanswered and the call ends UNAVAILABLE.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ClientKeepAliveTest {

  @Test
  void aCallToAGatewayThatFreezesFailsUnavailable() throws Exception {
    HealthStatusManager health = new HealthStatusManager();
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))
        .addService(health.getHealthService())
        .permitKeepAliveTime(10, TimeUnit.SECONDS)
        .build()
        .start();
    try (FreezingProxy proxy = new FreezingProxy(server.getPort())) {
      ManagedChannel channel = ClientChannels.open(new HostPort("127.0.0.1", proxy.port()),
          ClientChannels.Security.PLAINTEXT, Duration.ofSeconds(10), Duration.ofSeconds(2));
      try {
        // Watch answers with the current status and then stays open, as a stream between tokens.
        Iterator<HealthCheckResponse> watch = HealthGrpc.newBlockingStub(channel)
            .watch(HealthCheckRequest.newBuilder().setService("").build());
        assertEquals(ServingStatus.SERVING, watch.next().getStatus());
        proxy.freeze();
        long start = System.nanoTime();
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(
            StatusRuntimeException.class, watch::hasNext);
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.toString());
        long seconds = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - start);
        assertTrue(seconds >= 10, "failed after " + seconds + " s, before a ping was due");
      } finally {
        Gateways.close(channel);
      }
    } finally {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** Passes bytes both ways until frozen; then holds both connections open and passes nothing. */
  private static final class FreezingProxy implements AutoCloseable {
    private final ServerSocket listener = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
    private final int backendPort;
    private volatile boolean frozen;
    private volatile Socket client;
    private volatile Socket backend;

    FreezingProxy(int backendPort) throws IOException {
      this.backendPort = backendPort;
      Thread.ofPlatform().daemon().start(this::accept);
    }

    int port() {
      return listener.getLocalPort();
    }

    void freeze() {
      frozen = true;
    }

    private void accept() {
      try {
        client = listener.accept();
        backend = new Socket(InetAddress.getLoopbackAddress(), backendPort);
        Thread.ofPlatform().daemon().start(() -> pump(client, backend));
        Thread.ofPlatform().daemon().start(() -> pump(backend, client));
      } catch (IOException e) {
        // closed by the test
      }
    }

    private void pump(Socket from, Socket to) {
      byte[] buffer = new byte[8192];
      try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
        int n;
        while ((n = in.read(buffer)) >= 0) {
          while (frozen) {
            Thread.sleep(50); // hold the bytes: the peer sees a silent, open connection
          }
          out.write(buffer, 0, n);
          out.flush();
        }
      } catch (IOException | InterruptedException e) {
        // a side closed
      }
    }

    @Override
    public void close() throws IOException {
      listener.close();
      for (Socket s : new Socket[] {client, backend}) {
        if (s != null) {
          s.close();
        }
      }
    }
  }
}
