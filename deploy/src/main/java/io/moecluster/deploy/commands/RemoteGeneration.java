package io.moecluster.deploy.commands;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.moecluster.core.generate.FinishReason;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.Token;
import io.moecluster.proto.v1.TokenIds;
import io.moecluster.proto.v1.TokenizeRequest;
import java.io.PrintWriter;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * Generation through a gateway, for {@code moe client generate} and {@code moe demo}: turns the
 * flags of {@link GenerationOptions} into the gRPC request that means the same as {@code moe
 * generate}'s, streams it, and prints what {@code moe generate} prints.
 */
final class RemoteGeneration {
  private RemoteGeneration() {}

  /** What came back, with client-side timings: prefill up to the first token, decode after. */
  record Outcome(int[] promptIds, int promptTokens, int[] generatedIds, String text, FinishReason finishReason,
      long prefillNanos, long decodeNanos) {
    GenerationResult toResult() {
      return new GenerationResult(promptIds, generatedIds, text, finishReason, prefillNanos, decodeNanos);
    }

    double prefillTokensPerSecond() {
      return prefillNanos == 0 ? 0 : promptTokens * 1e9 / prefillNanos;
    }
  }

  /** The request of the flags; a bad flag is an IllegalArgumentException, as in moe generate. */
  static GenerateRequest request(GenerationOptions o) {
    if (o.maxTokens < 1) {
      throw new IllegalArgumentException("--max-tokens must be >= 1, got " + o.maxTokens);
    }
    SamplingParams s = o.sampling();
    GenerateRequest.Builder b = GenerateRequest.newBuilder();
    if (o.prompt.ids != null) {
      if (o.chat) {
        throw new IllegalArgumentException("--chat needs --prompt text, not --prompt-ids");
      }
      b.setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(o.prompt.ids).boxed().toList()));
    } else {
      if (o.prompt.text.isEmpty()) {
        throw new IllegalArgumentException("--prompt is empty");
      }
      b.setText(o.prompt.text).setChat(o.chat);
    }
    // Every sampling field is set, so the server's defaults never differ from the flags'.
    b.setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder()
        .setTemperature(s.temperature())
        .setTopK(s.topK())
        .setTopP(s.topP())
        .setMinP(s.minP())
        .setRepetitionPenalty(s.repetitionPenalty())
        .setSeed(s.seed()));
    return b.setMaxTokens(o.maxTokens).addAllStop(o.stop).setIgnoreEos(o.ignoreEos).build();
  }

  /**
   * The prompt's token ids as the gateway sees them: the given ids, or the text tokenized by the
   * gateway with special tokens (as a text prompt is). Null for a chat prompt: the template is
   * applied on the server, which does not return the ids.
   */
  static int[] promptIds(InferenceGrpc.InferenceBlockingStub stub, GenerateRequest request) {
    if (request.hasTokenIds()) {
      return request.getTokenIds().getIdsList().stream().mapToInt(Integer::intValue).toArray();
    }
    if (request.getChat()) {
      return null;
    }
    return stub.tokenize(TokenizeRequest.newBuilder().setText(request.getText()).setAddSpecialTokens(true).build())
        .getIdsList().stream().mapToInt(Integer::intValue).toArray();
  }

  /** {@link #promptIds}, moving to the next gateway while they are UNAVAILABLE. */
  static int[] promptIds(GatewayFailover gateways, GenerateRequest request, PrintWriter err)
      throws InterruptedException {
    while (true) {
      try {
        return promptIds(InferenceGrpc.newBlockingStub(gateways.channel()), request);
      } catch (StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.UNAVAILABLE || !gateways.canReconnect()) {
          throw e;
        }
        HostPort from = gateways.target();
        gateways.reconnect();
        err.printf(Locale.ROOT, "moe: gateway %s: UNAVAILABLE: %s; trying %s (reconnect %d of %d)%n", from,
            e.getStatus().getDescription(), gateways.target(), gateways.reconnects(), gateways.maxReconnects());
        err.flush();
      }
    }
  }

  /** Streams {@code request}, handing each text delta to {@code onText} as it arrives. */
  static Outcome stream(InferenceGrpc.InferenceBlockingStub stub, GenerateRequest request, int[] promptIds,
      Consumer<String> onText) {
    Progress p = new Progress(promptIds, onText);
    p.read(stub.generate(request));
    return p.outcome();
  }

  /**
   * Streams {@code request} through {@code gateways}: when the stream fails with UNAVAILABLE (the
   * gateway died, is shutting down, or cannot be reached), it reconnects to the next gateway and
   * asks it to resume after the token ids received so far ({@code resume_token_ids}), so {@code
   * onText} gets every piece of text once, in order. Each reconnection is reported on {@code err}.
   * Other errors, and UNAVAILABLE once the reconnections are spent, are thrown.
   */
  static Outcome streamResuming(GatewayFailover gateways, GenerateRequest request, int[] promptIds,
      Consumer<String> onText, PrintWriter err) throws InterruptedException {
    Progress p = new Progress(promptIds, onText);
    while (true) {
      GenerateRequest attempt = p.n == 0 ? request
          : request.toBuilder().clearResumeTokenIds()
              .addAllResumeTokenIds(Arrays.stream(p.ids, 0, p.n).boxed().toList()).build();
      try {
        p.read(InferenceGrpc.newBlockingStub(gateways.channel()).generate(attempt));
        return p.outcome();
      } catch (StatusRuntimeException e) {
        if (p.finished) {
          return p.outcome(); // the last message arrived; only the call's close was lost
        }
        if (e.getStatus().getCode() != Status.Code.UNAVAILABLE || !gateways.canReconnect()) {
          throw e;
        }
        HostPort from = gateways.target();
        gateways.reconnect();
        err.printf(Locale.ROOT, "%nmoe: gateway %s: UNAVAILABLE: %s; resuming after %d token(s) on %s (reconnect %d of %d)%n",
            from, e.getStatus().getDescription(), p.n, gateways.target(), gateways.reconnects(),
            gateways.maxReconnects());
        err.flush();
      }
    }
  }

  /** What a stream (and its resumptions) delivered so far. */
  private static final class Progress {
    private final int[] promptIds;
    private final Consumer<String> onText;
    private final long start = System.nanoTime();
    private long first;
    private long last;
    int[] ids = new int[16];
    int n;
    private final StringBuilder text = new StringBuilder();
    private FinishReason finish = FinishReason.CANCELLED;
    boolean finished;
    private int promptTokens;

    Progress(int[] promptIds, Consumer<String> onText) {
      this.promptIds = promptIds;
      this.onText = onText;
      this.promptTokens = promptIds == null ? 0 : promptIds.length;
    }

    void read(Iterator<GenerateResponse> it) {
      while (it.hasNext()) {
        GenerateResponse r = it.next();
        long now = System.nanoTime();
        for (Token t : r.getTokensList()) {
          if (n == ids.length) {
            ids = Arrays.copyOf(ids, n * 2);
          }
          ids[n++] = t.getId();
          if (first == 0) {
            first = now;
          }
          last = now;
        }
        if (!r.getText().isEmpty()) {
          text.append(r.getText());
          onText.accept(r.getText());
        }
        if (r.hasUsage()) {
          promptTokens = r.getUsage().getPromptTokens();
        }
        switch (r.getFinishReason()) {
          case FINISH_REASON_STOP -> finish = FinishReason.EOS;
          case FINISH_REASON_STOP_SEQUENCE -> finish = FinishReason.STOP_SEQUENCE;
          case FINISH_REASON_LENGTH -> finish = FinishReason.LENGTH;
          case FINISH_REASON_CANCELLED -> finish = FinishReason.CANCELLED;
          default -> { }
        }
        finished |= r.getFinishReason() != io.moecluster.proto.v1.FinishReason.FINISH_REASON_UNSPECIFIED;
      }
    }

    Outcome outcome() {
      return new Outcome(promptIds == null ? new int[0] : promptIds, promptTokens, Arrays.copyOf(ids, n),
          text.toString(), finish, first == 0 ? 0 : first - start, first == 0 ? 0 : last - first);
    }
  }

  /** The stderr summary line of moe generate. */
  static void printSpeeds(PrintWriter err, Outcome o) {
    GenerationResult r = o.toResult();
    err.printf(Locale.ROOT, "prompt %d tokens, prefill %.1f tokens/s; generated %d tokens, decode %.1f tokens/s (%s)%n",
        o.promptTokens(), o.prefillTokensPerSecond(), r.generatedIds().length, r.decodeTokensPerSecond(),
        r.finishReason().name().toLowerCase(Locale.ROOT));
    err.flush();
  }

  /**
   * A gRPC error as one line, {@code moe: CODE: description}; exit 2 for INVALID_ARGUMENT (the
   * request was wrong), 1 otherwise.
   */
  static int report(StatusRuntimeException e, PrintWriter err) {
    var status = e.getStatus();
    String description = status.getDescription() != null ? status.getDescription()
        : status.getCause() != null ? String.valueOf(status.getCause().getMessage()) : "";
    err.println("moe: " + status.getCode() + ": " + description);
    err.flush();
    return status.getCode() == io.grpc.Status.Code.INVALID_ARGUMENT ? ExitCodes.USAGE : ExitCodes.FAILURE;
  }
}
