package io.moecluster.gateway.security;

import io.grpc.ForwardingServerCallListener.SimpleForwardingServerCallListener;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Caps the calls one client has open at once, so that one client cannot take every admission slot
 * and queue place of the gateway. A client is its API key when the gateway authenticates ({@link
 * ApiKeyInterceptor#CLIENT}), else its IP address (all connections from one host count together).
 * A call over the cap is closed at once with {@code RESOURCE_EXHAUSTED}; a call frees its place
 * when it completes or is cancelled.
 */
public final class ClientStreamLimiter implements ServerInterceptor {
  private final int maxPerClient;
  private final Map<String, Integer> open = new ConcurrentHashMap<>();

  public ClientStreamLimiter(int maxPerClient) {
    if (maxPerClient < 1) {
      throw new IllegalArgumentException("maxPerClient must be >= 1, got " + maxPerClient);
    }
    this.maxPerClient = maxPerClient;
  }

  /** Calls {@code client} has open now (tests). */
  public int open(String client) {
    return open.getOrDefault(client, 0);
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    String client = client(call);
    if (!tryAcquire(client)) {
      RefusedCalls.count(RefusedCalls.Reason.CLIENT_LIMIT);
      call.close(
          Status.RESOURCE_EXHAUSTED.withDescription(
              "this client already has "
                  + maxPerClient
                  + " calls open (moe.gateway.max-streams-per-client); wait for one to finish"),
          new Metadata());
      return new ServerCall.Listener<>() {};
    }
    AtomicBoolean released = new AtomicBoolean();
    Runnable release =
        () -> {
          if (released.compareAndSet(false, true)) {
            open.computeIfPresent(client, (k, n) -> n <= 1 ? null : n - 1);
          }
        };
    ServerCall.Listener<ReqT> listener;
    try {
      listener = next.startCall(call, headers);
    } catch (RuntimeException | Error e) {
      release.run();
      throw e;
    }
    return new SimpleForwardingServerCallListener<>(listener) {
      @Override
      public void onComplete() {
        release.run();
        super.onComplete();
      }

      @Override
      public void onCancel() {
        release.run();
        super.onCancel();
      }
    };
  }

  private boolean tryAcquire(String client) {
    boolean[] acquired = {false};
    open.compute(
        client,
        (k, n) -> {
          int now = n == null ? 0 : n;
          if (now >= maxPerClient) {
            return n;
          }
          acquired[0] = true;
          return now + 1;
        });
    return acquired[0];
  }

  private static String client(ServerCall<?, ?> call) {
    String key = ApiKeyInterceptor.CLIENT.get();
    if (key != null) {
      return key;
    }
    SocketAddress peer = call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
    if (peer instanceof InetSocketAddress inet && inet.getAddress() != null) {
      return "ip:" + inet.getAddress().getHostAddress();
    }
    return "peer:" + peer;
  }
}
