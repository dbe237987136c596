package io.moecluster.gateway.security;

import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;

/**
 * Makes a request that is not a valid protobuf message (bad wire format, a string field that is
 * not UTF-8) a client error: {@code INVALID_ARGUMENT} naming the message type. gRPC's own protobuf
 * marshaller reports it as {@code INTERNAL}, which would blame the server for the client's bytes.
 *
 * <p>The wrapped service reads raw bytes and parses each request itself with the method's own
 * marshaller; responses are serialized with the method's own marshaller too, so clients see the
 * same service.
 */
public final class StrictRequestParsing {
  private StrictRequestParsing() {}

  /** {@code service} with every method's request parsed as described above. */
  public static ServerServiceDefinition wrap(ServerServiceDefinition service) {
    List<ServerMethodDefinition<InputStream, InputStream>> methods = new ArrayList<>();
    for (ServerMethodDefinition<?, ?> method : service.getMethods()) {
      methods.add(wrap(method));
    }
    // The schema descriptor stays: server reflection lists and describes the service from it.
    ServiceDescriptor.Builder descriptor = ServiceDescriptor.newBuilder(service.getServiceDescriptor().getName())
        .setSchemaDescriptor(service.getServiceDescriptor().getSchemaDescriptor());
    methods.forEach(m -> descriptor.addMethod(m.getMethodDescriptor()));
    ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(descriptor.build());
    methods.forEach(b::addMethod);
    return b.build();
  }

  private static <ReqT, RespT> ServerMethodDefinition<InputStream, InputStream> wrap(
      ServerMethodDefinition<ReqT, RespT> method) {
    MethodDescriptor<ReqT, RespT> descriptor = method.getMethodDescriptor();
    MethodDescriptor<InputStream, InputStream> raw =
        descriptor.toBuilder(RawMarshaller.INSTANCE, RawMarshaller.INSTANCE).build();
    ServerCallHandler<ReqT, RespT> handler = method.getServerCallHandler();
    ServerCallHandler<InputStream, InputStream> wrapped =
        (call, headers) -> {
          ServerCall<ReqT, RespT> typed = new TypedCall<>(call, descriptor);
          return new Listener<>(call, handler.startCall(typed, headers), descriptor);
        };
    return ServerMethodDefinition.create(raw, wrapped);
  }

  /** The service's view of the raw call: its responses are serialized on the way out. */
  private static final class TypedCall<ReqT, RespT> extends ServerCall<ReqT, RespT> {
    private final ServerCall<InputStream, InputStream> raw;
    private final MethodDescriptor<ReqT, RespT> descriptor;

    TypedCall(ServerCall<InputStream, InputStream> raw, MethodDescriptor<ReqT, RespT> descriptor) {
      this.raw = raw;
      this.descriptor = descriptor;
    }

    @Override
    public void request(int numMessages) {
      raw.request(numMessages);
    }

    @Override
    public void sendHeaders(Metadata headers) {
      raw.sendHeaders(headers);
    }

    @Override
    public void sendMessage(RespT message) {
      raw.sendMessage(descriptor.streamResponse(message));
    }

    @Override
    public boolean isReady() {
      return raw.isReady();
    }

    @Override
    public void close(Status status, Metadata trailers) {
      raw.close(status, trailers);
    }

    @Override
    public boolean isCancelled() {
      return raw.isCancelled();
    }

    @Override
    public void setMessageCompression(boolean enabled) {
      raw.setMessageCompression(enabled);
    }

    @Override
    public void setCompression(String compressor) {
      raw.setCompression(compressor);
    }

    @Override
    public io.grpc.Attributes getAttributes() {
      return raw.getAttributes();
    }

    @Override
    public String getAuthority() {
      return raw.getAuthority();
    }

    @Override
    public MethodDescriptor<ReqT, RespT> getMethodDescriptor() {
      return descriptor;
    }

    @Override
    public io.grpc.SecurityLevel getSecurityLevel() {
      return raw.getSecurityLevel();
    }
  }

  /**
   * Parses each request; a bad one closes the call with INVALID_ARGUMENT and the service hears
   * nothing more of it but its cancellation or completion (so it can free what it holds).
   */
  private static final class Listener<ReqT> extends ServerCall.Listener<InputStream> {
    private final ServerCall<InputStream, ?> raw;
    private final ServerCall.Listener<ReqT> delegate;
    private final MethodDescriptor<ReqT, ?> descriptor;
    private boolean refused;
    private boolean received;

    Listener(ServerCall<InputStream, ?> raw, ServerCall.Listener<ReqT> delegate, MethodDescriptor<ReqT, ?> descriptor) {
      this.raw = raw;
      this.delegate = delegate;
      this.descriptor = descriptor;
    }

    @Override
    public void onMessage(InputStream message) {
      if (refused) {
        return;
      }
      received = true;
      ReqT request;
      try {
        request = descriptor.parseRequest(message);
      } catch (RuntimeException e) {
        String type = descriptor.getRequestMarshaller() instanceof MethodDescriptor.ReflectableMarshaller<?> r
            ? r.getMessageClass().getSimpleName()
            : "request";
        refuse("the request is not a valid " + type
            + " message (malformed protobuf, or a string field that is not UTF-8)");
        return;
      }
      delegate.onMessage(request);
    }

    @Override
    public void onHalfClose() {
      if (refused) {
        return;
      }
      if (!received && descriptor.getType().clientSendsOneMessage()) {
        refuse("the call ended without its request message");
        return;
      }
      delegate.onHalfClose();
    }

    private void refuse(String description) {
      refused = true;
      RefusedCalls.count(RefusedCalls.Reason.MALFORMED);
      raw.close(Status.INVALID_ARGUMENT.withDescription(description), new Metadata());
    }

    @Override
    public void onCancel() {
      delegate.onCancel();
    }

    @Override
    public void onComplete() {
      delegate.onComplete();
    }

    @Override
    public void onReady() {
      if (!refused) {
        delegate.onReady();
      }
    }
  }

  /** Passes the bytes through; parsing happens in {@link Listener}. */
  private enum RawMarshaller implements MethodDescriptor.Marshaller<InputStream> {
    INSTANCE;

    @Override
    public InputStream stream(InputStream value) {
      return value;
    }

    @Override
    public InputStream parse(InputStream stream) {
      return stream;
    }
  }
}
