package io.moecluster.gateway;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.generate.EosTokens;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.v1.CompleteResponse;
import io.moecluster.proto.v1.DetokenizeRequest;
import io.moecluster.proto.v1.DetokenizeResponse;
import io.moecluster.proto.v1.ExpertPlacement;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import io.moecluster.proto.v1.TokenizeRequest;
import io.moecluster.proto.v1.TokenizeResponse;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code moecluster.v1.Inference} service: validates requests, tokenizes, passes
 * Generate/Complete through {@link Admission} to a {@link StreamSession} that talks to a router,
 * and answers Tokenize, Detokenize and GetModelInfo locally (GetModelInfo adds the router's expert
 * placement). Clients see gRPC statuses with short messages, never stack traces.
 */
public final class InferenceService extends InferenceGrpc.InferenceImplBase {
  private static final Logger log = LoggerFactory.getLogger(InferenceService.class);

  private final ActorSystem<?> system;
  private final Tokenizer tokenizer;
  private final ModelConfig config;
  private final String modelName;
  private final RequestValidator validator;
  private final Admission admission;
  private final RouterDirectory routers;
  private final StreamSession.Env env;
  private final String idPrefix =
      "gw" + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt()) + "-";
  private final AtomicLong nextId = new AtomicLong();
  /** The sessions of calls still running, by request id (for {@link #endStreams}). */
  private final Map<String, ActorRef<Object>> live = new ConcurrentHashMap<>();

  InferenceService(
      ActorSystem<?> system,
      GatewaySettings settings,
      Tokenizer tokenizer,
      ModelConfig config,
      String modelName,
      Admission admission,
      RouterDirectory routers) {
    this.system = system;
    this.tokenizer = tokenizer;
    this.config = config;
    this.modelName = modelName;
    this.validator = new RequestValidator(tokenizer, config, settings, modelName);
    this.admission = admission;
    this.routers = routers;
    routers.onUnreachable(
        address ->
            live.values()
                .forEach(session -> session.tell(new StreamSession.RouterUnreachable(address))));
    this.env = new StreamSession.Env(
            routers, tokenizer, settings.firstEventTimeout(), settings.maxResubmissions());
  }

  @Override
  public void generate(GenerateRequest request, StreamObserver<GenerateResponse> responses) {
    start(request, responses, StreamSession.Mode.STREAM);
  }

  @Override
  public void complete(GenerateRequest request, StreamObserver<CompleteResponse> response) {
    start(request, response, StreamSession.Mode.UNARY);
  }

  private void start(GenerateRequest request, StreamObserver<?> observer, StreamSession.Mode mode) {
    ServerCallStreamObserver<?> call = (ServerCallStreamObserver<?>) observer;
    RequestValidator.ValidRequest valid;
    try {
      valid = validator.validate(request);
    } catch (StatusRuntimeException e) {
      GatewayMetrics.rejected(e.getStatus().getCode());
      observer.onError(e);
      return;
    } catch (RuntimeException e) {
      GatewayMetrics.rejected(Status.Code.INTERNAL);
      internal(observer, "validating a request", e);
      return;
    }
    String id = idPrefix + nextId.incrementAndGet();
    StreamSession.Slot slot = new StreamSession.Slot(() -> live.remove(id));
    ActorRef<Object> session =
        system.systemActorOf(
            StreamSession.create(env, mode, call, valid, id, slot),
            "gateway-call-" + id,
            Props.empty());
    live.put(id, session);
    // gRPC threads only forward to the session, which alone writes to the call.
    call.setOnReadyHandler(() -> session.tell(StreamSession.Signal.READY));
    call.setOnCancelHandler(() -> session.tell(StreamSession.Signal.CLIENT_CANCELLED));
    try {
      Admission.Ticket ticket =
          admission.acquire(
              permit -> {
                if (slot.offer(permit)) {
                  session.tell(StreamSession.Signal.ADMITTED);
                }
              });
      slot.ticket(ticket);
    } catch (Admission.RejectedException e) {
      log.debug("request {} rejected: {}", id, e.getMessage());
      session.tell(new StreamSession.Rejected(e.getMessage()));
    }
  }

  /**
   * Ends every running Generate/Complete call with UNAVAILABLE (the gateway is going away) and
   * cancels its sequence on the router; a client may resume the stream on another gateway.
   */
  void endStreams() {
    live.values().forEach(session -> session.tell(StreamSession.Signal.GATEWAY_STOPPING));
  }

  @Override
  public void tokenize(TokenizeRequest request, StreamObserver<TokenizeResponse> response) {
    try {
      validator.checkModel(request.getModel());
      // The prompt's limit: a reply for longer text could pass the client's message limit.
      validator.checkTextLength("text", request.getText());
      int[] ids = validator.encode("text", request.getText(), request.getAddSpecialTokens());
      TokenizeResponse.Builder b = TokenizeResponse.newBuilder();
      for (int id : ids) {
        b.addIds(id).addTokens(tokenizer.token(id));
      }
      response.onNext(b.build());
      response.onCompleted();
    } catch (StatusRuntimeException e) {
      response.onError(e);
    } catch (RuntimeException e) {
      internal(response, "tokenizing", e);
    }
  }

  @Override
  public void detokenize(DetokenizeRequest request, StreamObserver<DetokenizeResponse> response) {
    try {
      validator.checkModel(request.getModel());
      int vocab = tokenizer.vocabSize();
      int[] ids = new int[request.getIdsCount()];
      for (int i = 0; i < ids.length; i++) {
        int id = request.getIds(i);
        if (id < 0 || id >= vocab || !hasToken(id)) {
          throw RequestValidator.invalid(
              "ids: id "
                  + id
                  + " at position "
                  + i
                  + " is not in the vocabulary [0, "
                  + vocab
                  + ")");
        }
        ids[i] = id;
      }
      response.onNext(
          DetokenizeResponse.newBuilder()
              .setText(tokenizer.decode(ids, request.getSkipSpecialTokens()))
              .build());
      response.onCompleted();
    } catch (StatusRuntimeException e) {
      response.onError(e);
    } catch (RuntimeException e) {
      internal(response, "detokenizing", e);
    }
  }

  private boolean hasToken(int id) {
    try {
      tokenizer.token(id);
      return true;
    } catch (RuntimeException e) {
      return false;
    }
  }

  @Override
  public void getModelInfo(GetModelInfoRequest request, StreamObserver<ModelInfo> response) {
    try {
      validator.checkModel(request.getModel());
    } catch (StatusRuntimeException e) {
      response.onError(e);
      return;
    }
    routers
        .status()
        .whenComplete(
            (status, error) -> {
              try {
                response.onNext(modelInfo(error == null ? status : Optional.empty()));
                response.onCompleted();
              } catch (RuntimeException e) {
                internal(response, "describing the model", e);
              }
            });
  }

  /** The model's description; placement from the router's status when one answered. */
  ModelInfo modelInfo(Optional<RouterStatus> status) {
    ModelInfo.Builder b =
        ModelInfo.newBuilder()
            .setName(modelName)
            .setModelType(config.family().modelType())
            .setVocabSize(config.vocabSize())
            .setContextLength(config.contextLength())
            .setNumLayers(config.numLayers())
            .setNumExperts(config.numExperts())
            .setExpertsPerToken(config.topK())
            .setHiddenSize(config.hiddenSize())
            .setDtype(dtype(config.torchDtype()));
    if (config.bosTokenId() >= 0) {
      b.setBosTokenId(config.bosTokenId());
    } else {
      tokenizer.bosTokenId().ifPresent(b::setBosTokenId);
    }
    EosTokens.of(config, tokenizer).stream().sorted().forEach(b::addEosTokenIds);
    RouterStatus st = status.orElse(RouterStatus.getDefaultInstance());
    List<ExpertPlacement> placement = new ArrayList<>();
    for (int i = 0; i < st.getPlacedLayerCount(); i++) {
      int node = st.getPlacedNode(i);
      placement.add(
          ExpertPlacement.newBuilder()
              .setLayer(st.getPlacedLayer(i))
              .setExpert(st.getPlacedExpert(i))
              .setReplica(st.getPlacedReplica(i))
              .setNode(node < st.getPlacementNodesCount() ? st.getPlacementNodes(node) : "")
              .setLoaded(st.getPlacedLoaded(i))
              .build());
    }
    placement.sort(
        Comparator.comparingInt(ExpertPlacement::getLayer)
            .thenComparingInt(ExpertPlacement::getExpert)
            .thenComparingInt(ExpertPlacement::getReplica));
    b.addAllPlacement(placement);
    return b.build();
  }

  private static String dtype(String torchDtype) {
    return switch (torchDtype == null ? "" : torchDtype) {
      case "bfloat16" -> "bf16";
      case "float16" -> "f16";
      case "float32" -> "f32";
      default -> torchDtype == null ? "" : torchDtype;
    };
  }

  private static void internal(StreamObserver<?> observer, String what, RuntimeException e) {
    log.error("internal error while {}", what, e);
    observer.onError(
        Status.INTERNAL.withDescription("internal error while " + what).asRuntimeException());
  }
}
