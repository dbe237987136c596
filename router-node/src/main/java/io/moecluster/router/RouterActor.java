package io.moecluster.router;

import io.moecluster.core.generate.FinishReason;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.TokenEvent;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.proto.cluster.v1.Failed;
import io.moecluster.proto.cluster.v1.Finished;
import io.moecluster.proto.cluster.v1.Located;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.cluster.v1.SamplingSpec;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.cluster.v1.Submit;
import io.moecluster.proto.cluster.v1.TokenChunk;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.actor.typed.receptionist.ServiceKey;
import org.apache.pekko.cluster.typed.Cluster;

/**
 * The router's front door for gateways, registered with the Receptionist under
 * {@link #SERVICE_KEY}. It checks and converts a {@code Submit} and hands it to the
 * {@link Engine}, whose events it turns into {@code SequenceEvent}s for the submitter; it forwards
 * cancels and answers status queries from the engine's counts and the expert placement. It holds
 * no per-request state: the engine owns the sequences.
 */
public final class RouterActor extends AbstractBehavior<RouterCommand> {

  /** How gateways find routers. */
  public static final ServiceKey<RouterCommand> SERVICE_KEY = ServiceKey.create(RouterCommand.class, "moe-router");

  public static Behavior<RouterCommand> create(Engine engine, Supplier<ExpertPlacement.Snapshot> placement) {
    return Behaviors.setup(ctx -> new RouterActor(ctx, engine, placement));
  }

  private final Engine engine;
  private final Supplier<ExpertPlacement.Snapshot> placement;
  private final ActorRefResolver resolver;
  private final String node;

  private RouterActor(ActorContext<RouterCommand> ctx, Engine engine, Supplier<ExpertPlacement.Snapshot> placement) {
    super(ctx);
    this.engine = engine;
    this.placement = placement;
    this.resolver = ActorRefResolver.get(ctx.getSystem());
    this.node = Cluster.get(ctx.getSystem()).selfMember().address().toString();
    ctx.getSystem().receptionist().tell(Receptionist.register(SERVICE_KEY, ctx.getSelf()));
  }

  @Override
  public Receive<RouterCommand> createReceive() {
    return newReceiveBuilder().onMessage(RouterCommand.class, this::onCommand).build();
  }

  private Behavior<RouterCommand> onCommand(RouterCommand cmd) {
    switch (cmd.getCommandCase()) {
      case SUBMIT -> onSubmit(cmd.getSubmit());
      case CANCEL -> engine.cancel(cmd.getCancel().getRequestId());
      case GET_STATUS -> {
        ActorRef<RouterStatus> replyTo = resolve(cmd.getGetStatus().getReplyTo(), "GetStatus");
        if (replyTo != null) {
          replyTo.tell(status(cmd.getGetStatus().getWithPlacement()));
        }
      }
      case COMMAND_NOT_SET -> getContext().getLog().warn("Empty RouterCommand ignored");
    }
    return this;
  }

  /** The router's status now; the expert placement only when asked for. */
  private RouterStatus status(boolean withPlacement) {
    ExpertPlacement.Snapshot p = placement.get();
    // A router whose engine stopped takes no sequence: gateways must not count it as serving.
    boolean alive = engine.alive();
    RouterStatus.Builder b = RouterStatus.newBuilder()
        .setExpertsReady(p.ready() && alive)
        .setRunning(engine.running())
        .setWaiting(engine.waiting())
        .setNode(node)
        .setDetail(alive ? p.detail() : "the router's engine has stopped (see this node's log); restart the node");
    if (withPlacement) {
      addPlacement(b, p.placement());
    }
    return b.build();
  }

  /**
   * The placement in its compact form: each node's address once, and per entity five packed
   * numbers. As Located messages, with the entity's actor path and its node's address repeated for
   * every entity, the status of a 6144-entity model was larger than one Artery frame.
   */
  static void addPlacement(RouterStatus.Builder b, List<Located> placement) {
    Map<String, Integer> nodes = new LinkedHashMap<>();
    for (Located l : placement) {
      Integer node = nodes.get(l.getNode());
      if (node == null) {
        node = nodes.size();
        nodes.put(l.getNode(), node);
      }
      b.addPlacedLayer(l.getLayer())
          .addPlacedExpert(l.getExpert())
          .addPlacedReplica(l.getReplica())
          .addPlacedNode(node)
          .addPlacedLoaded(l.getLoaded());
    }
    b.addAllPlacementNodes(nodes.keySet());
  }

  private void onSubmit(Submit submit) {
    ActorRef<SequenceEvent> replyTo = resolve(submit.getReplyTo(), "Submit " + submit.getRequestId());
    if (replyTo == null) {
      return;
    }
    String id = submit.getRequestId();
    Engine.Listener listener = new EventSender(id, replyTo);
    GenerationRequest request;
    try {
      request = toRequest(submit);
    } catch (IllegalArgumentException e) {
      listener.onFailed("INVALID_ARGUMENT", e.getMessage());
      return;
    }
    engine.submit(id, request, listener);
  }

  /** Converts a Submit; IllegalArgumentException names the offending field. */
  static GenerationRequest toRequest(Submit submit) {
    SamplingParams sampling = submit.hasSampling() ? toParams(submit.getSampling()) : SamplingParams.GREEDY;
    if (submit.getMaxTokens() == 0) {
      throw new IllegalArgumentException("max_tokens must be >= 1, got 0");
    }
    int maxTokens = (int) Math.min(Integer.MAX_VALUE, Integer.toUnsignedLong(submit.getMaxTokens()));
    int[] prompt = submit.getPromptIdsList().stream().mapToInt(Integer::intValue).toArray();
    if (prompt.length == 0) {
      throw new IllegalArgumentException("prompt_ids must contain at least one token");
    }
    if (submit.getLogprobs() > GenerationRequest.MAX_LOGPROBS) {
      throw new IllegalArgumentException(
          "logprobs must be at most " + GenerationRequest.MAX_LOGPROBS + ", got " + Integer.toUnsignedLong(submit.getLogprobs()));
    }
    int[] resumed = submit.getResumeIdsList().stream().mapToInt(Integer::intValue).toArray();
    return new GenerationRequest(
        prompt, sampling, maxTokens, submit.getStopList(), submit.getIgnoreEos(), submit.getLogprobs(), resumed);
  }

  /** Converts sampling parameters; IllegalArgumentException names the field ("sampling.top_p ..."). */
  static SamplingParams toParams(SamplingSpec s) {
    try {
      return new SamplingParams(s.getTemperature(), s.getTopK(), s.getTopP(), s.getMinP(),
          s.getRepetitionPenalty(), s.getSeed());
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("sampling." + e.getMessage(), e);
    }
  }

  private <T> ActorRef<T> resolve(String serialized, String what) {
    if (serialized.isEmpty()) {
      getContext().getLog().warn("{} has no reply_to; dropped", what);
      return null;
    }
    try {
      return resolver.resolveActorRef(serialized);
    } catch (RuntimeException e) {
      getContext().getLog().warn("{}: cannot resolve reply_to '{}'; dropped", what, serialized);
      return null;
    }
  }

  /** Turns one sequence's engine events into SequenceEvents for its submitter. */
  private record EventSender(String requestId, ActorRef<SequenceEvent> replyTo) implements Engine.Listener {
    @Override
    public void onToken(TokenEvent token) {
      TokenChunk.Builder chunk = TokenChunk.newBuilder()
          .setIndex(token.index())
          .setTokenId(token.tokenId())
          .setText(token.textDelta());
      if (token.hasLogprob()) {
        chunk.setLogprob(token.logprob());
        for (var alt : token.topLogprobs()) {
          chunk.addTop(io.moecluster.proto.cluster.v1.TopLogprob.newBuilder()
              .setId(alt.tokenId())
              .setLogprob(alt.logprob()));
        }
      }
      replyTo.tell(SequenceEvent.newBuilder().setRequestId(requestId).setToken(chunk).build());
    }

    @Override
    public void onFinished(FinishReason reason, int promptTokens, int completionTokens) {
      replyTo.tell(SequenceEvent.newBuilder()
          .setRequestId(requestId)
          .setFinished(Finished.newBuilder()
              .setReason(reason.name().toLowerCase(Locale.ROOT))
              .setPromptTokens(promptTokens)
              .setCompletionTokens(completionTokens))
          .build());
    }

    @Override
    public void onFailed(String code, String message) {
      replyTo.tell(SequenceEvent.newBuilder()
          .setRequestId(requestId)
          .setFailed(Failed.newBuilder().setCode(code).setMessage(message))
          .build());
    }
  }
}
