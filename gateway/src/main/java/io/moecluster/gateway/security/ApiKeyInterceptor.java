package io.moecluster.gateway.security;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;

/**
 * Lets a call through only with {@code authorization: Bearer <key>} naming one of the configured
 * API keys; otherwise closes it with {@code UNAUTHENTICATED} and a message saying what to send.
 * Keys are compared as SHA-256 digests with {@link MessageDigest#isEqual} against every key, so
 * the time taken tells nothing about how much of a key was right or which key matched. An
 * accepted call runs with {@link #CLIENT} set to a short, non-secret name of its key (the
 * per-client limit counts by it).
 */
public final class ApiKeyInterceptor implements ServerInterceptor {
  /** The client a call belongs to ("key:" + digest prefix), set on authenticated calls. */
  public static final Context.Key<String> CLIENT = Context.key("moe-client");

  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final String BEARER = "bearer ";

  private final byte[][] digests;

  public ApiKeyInterceptor(List<String> keys) {
    if (keys.isEmpty()) {
      throw new IllegalArgumentException("ApiKeyInterceptor needs at least one key");
    }
    digests = keys.stream().map(ApiKeyInterceptor::digest).toArray(byte[][]::new);
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    String header = headers.get(AUTHORIZATION);
    String refusal;
    if (header == null) {
      refusal = "this gateway needs an API key: send the header 'authorization: Bearer <api key>'";
    } else if (header.length() <= BEARER.length()
        || !header.substring(0, BEARER.length()).toLowerCase(Locale.ROOT).equals(BEARER)) {
      refusal = "the authorization header must be 'Bearer <api key>'";
    } else {
      byte[] offered = digest(header.substring(BEARER.length()).strip());
      int match = -1;
      for (int i = 0; i < digests.length; i++) {
        // No early exit: every key is compared whatever matched.
        if (MessageDigest.isEqual(offered, digests[i])) {
          match = i;
        }
      }
      if (match >= 0) {
        String client = "key:" + HexFormat.of().formatHex(digests[match], 0, 4);
        return Contexts.interceptCall(Context.current().withValue(CLIENT, client), call, headers, next);
      }
      refusal = "the API key is not valid";
    }
    RefusedCalls.count(RefusedCalls.Reason.UNAUTHENTICATED);
    call.close(Status.UNAUTHENTICATED.withDescription(refusal), new Metadata());
    return new ServerCall.Listener<>() {};
  }

  private static byte[] digest(String key) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("the JDK has no SHA-256", e);
    }
  }
}
