package io.moecluster.gateway;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.proto.cluster.v1.Cancel;
import io.moecluster.proto.cluster.v1.Failed;
import io.moecluster.proto.cluster.v1.Finished;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.cluster.v1.Submit;
import io.moecluster.proto.cluster.v1.TokenChunk;
import io.moecluster.proto.v1.CompleteResponse;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.Token;
import io.moecluster.proto.v1.TopLogprob;
import io.moecluster.proto.v1.Usage;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One Generate or Complete call: a short-lived actor that waits for admission, submits the request
 * to a router, receives the router's {@link SequenceEvent}s and is the only writer to the call's
 * {@link ServerCallStreamObserver}. Tokens are queued and written only while the client {@code
 * isReady()}; when the client is slow, the queued tokens go out coalesced in one message. gRPC
 * callbacks (ready, cancel, deadline) arrive as messages. Whatever ends the call, the router's
 * in-flight count and the admission permit are released exactly once, and a router that may still
 * be generating gets a {@code Cancel}.
 *
 * <p>Router loss: when its router stops, leaves the cluster or answers UNAVAILABLE, the session
 * resubmits the request to another router (at most {@code maxResubmissions} times, within the
 * call's deadline), resumed after every token it has received so far. Replay is exact (batch
 * invariance and the (seed, position) sampler), so the new router's first token is the one the
 * client would have got next. Each submission carries its own attempt id ({@code <id>/<n>}) and
 * the session takes a token only with the next expected index from the current attempt, so a late
 * event of a lost router can never reach the client: every token arrives once, in order.
 *
 * <p>Its reference is an {@code ActorRef<SequenceEvent>} (the router's view); the gateway's own
 * messages to it are local only.
 */
final class StreamSession extends AbstractBehavior<Object> {
  /**
   * Most tokens in one message of a stream. A client that stops reading gets what queued up in
   * messages of at most this many tokens: with 20 logprobs a token takes about 360 bytes, so one
   * message of a long completion could pass the client's 4 MiB limit.
   */
  static final int MAX_TOKENS_PER_MESSAGE = 256;

  private static final Logger log = LoggerFactory.getLogger(StreamSession.class);

  /** How the call's answer is written: a stream of chunks, or one response at the end. */
  enum Mode {
    STREAM,
    UNARY
  }

  /** Everything a session needs from the gateway. */
  record Env(
      RouterDirectory routers, Tokenizer tokenizer, Duration firstEventTimeout, int maxResubmissions) {
    /** Without resubmission after a router loss. */
    Env(RouterDirectory routers, Tokenizer tokenizer, Duration firstEventTimeout) {
      this(routers, tokenizer, firstEventTimeout, 0);
    }
  }

  // --- local messages (never leave this JVM) ---
  /**
   * The call's place in admission, shared by the granting thread and the actor: a permit that
   * arrives after the call ended is released at once, so none is ever lost in a dead letter.
   */
  static final class Slot {
    /** The call's latency and token metrics, timed from its arrival. */
    final GatewayMetrics.Call metrics = GatewayMetrics.call();
    private final Runnable onClose;
    private Admission.Ticket ticket;
    private Admission.Permit permit;
    private boolean closed;

    Slot() {
      this(() -> {});
    }

    /** {@code onClose} runs once, when the call ends. */
    Slot(Runnable onClose) {
      this.onClose = onClose;
    }

    /** Keeps the permit; false (and released) when the call already ended. */
    synchronized boolean offer(Admission.Permit p) {
      if (closed) {
        p.release();
        return false;
      }
      permit = p;
      return true;
    }

    synchronized void ticket(Admission.Ticket t) {
      ticket = t;
      if (closed) {
        t.cancel();
      }
    }

    /** Leaves the queue or releases the permit; idempotent. */
    synchronized void close() {
      if (!closed) {
        onClose.run();
      }
      closed = true;
      if (ticket != null) {
        ticket.cancel();
      }
      if (permit != null) {
        permit.release();
      }
    }
  }

  enum Signal implements NoSerializationVerificationNeeded {
    /** The call holds an admission permit (in its {@link Slot}). */
    ADMITTED,
    READY,
    CLIENT_CANCELLED,
    FIRST_EVENT_TIMEOUT,
    /** The gateway is shutting down and will not wait for this call any longer. */
    GATEWAY_STOPPING
  }

  /**
   * The failure detector lost the cluster member at {@code address}: a router there may be dead;
   * the stream moves on rather than wait for the node to be downed.
   */
  record RouterUnreachable(Address address) implements NoSerializationVerificationNeeded {}

  /** Admission refused the call: answer RESOURCE_EXHAUSTED (from the actor, the only writer). */
  record Rejected(String message) implements NoSerializationVerificationNeeded {}

  private final Env env;
  private final Mode mode;
  private final ServerCallStreamObserver<Object> call;
  private final RequestValidator.ValidRequest request;
  private final String requestId;
  private final TimerScheduler<Object> timers;

  private final Slot slot;
  private RouterDirectory.Lease lease;
  /** The resubmission reason of a router that answered RESOURCE_EXHAUSTED. */
  private static final String EXHAUSTED = "router_exhausted";

  /** Routers this call lost; never chosen again for it. */
  private final Set<ActorRef<RouterCommand>> lost = new HashSet<>();
  /** Submissions after the first one. */
  private int resubmissions;
  /** The request id of the current submission; events with another id are stale. */
  private String attemptId;
  /**
   * Every token of the completion so far, in index order: the client's resume ids, then each
   * token taken from a router (queued or written). A resubmission resumes after all of them.
   */
  private final List<Integer> delivered = new ArrayList<>();
  private boolean submitted;
  private boolean sawEvent;
  private boolean closed;
  private final ArrayDeque<TokenChunk> pending = new ArrayDeque<>();
  private Finished finished;
  // UNARY: the whole completion
  private final List<TokenChunk> all = new ArrayList<>();
  private final StringBuilder text = new StringBuilder();

  @SuppressWarnings("unchecked")
  static Behavior<Object> create(
      Env env,
      Mode mode,
      ServerCallStreamObserver<?> call,
      RequestValidator.ValidRequest request,
      String requestId,
      Slot slot) {
    return Behaviors.setup(
        context ->
            Behaviors.withTimers(
                timers ->
                    new StreamSession(
                        context,
                        timers,
                        env,
                        mode,
                        (ServerCallStreamObserver<Object>) call,
                        request,
                        requestId,
                        slot)));
  }

  private StreamSession(
      ActorContext<Object> context,
      TimerScheduler<Object> timers,
      Env env,
      Mode mode,
      ServerCallStreamObserver<Object> call,
      RequestValidator.ValidRequest request,
      String requestId,
      Slot slot) {
    super(context);
    this.slot = slot;
    this.timers = timers;
    this.env = env;
    this.mode = mode;
    this.call = call;
    this.request = request;
    this.requestId = requestId;
    this.attemptId = requestId;
    for (int id : request.resumeIds()) {
      delivered.add(id);
    }
  }

  @Override
  public Receive<Object> createReceive() {
    return newReceiveBuilder()
        .onMessage(
            Rejected.class,
            r -> guarded(() -> fail(Status.RESOURCE_EXHAUSTED.withDescription(r.message()), false)))
        .onMessageEquals(Signal.ADMITTED, () -> guarded(this::onAdmitted))
        .onMessage(SequenceEvent.class, e -> guarded(() -> onEvent(e)))
        .onMessageEquals(Signal.READY, () -> guarded(this::flush))
        .onMessageEquals(Signal.CLIENT_CANCELLED, this::onClientCancelled)
        .onMessageEquals(
            Signal.FIRST_EVENT_TIMEOUT,
            () ->
                guarded(
                    () ->
                        fail(
                            Status.UNAVAILABLE.withDescription(
                                "the router did not answer within "
                                    + env.firstEventTimeout().toMillis()
                                    + " ms; retry later"),
                            true)))
        .onMessageEquals(
            Signal.GATEWAY_STOPPING,
            () ->
                guarded(
                    () ->
                        fail(
                            Status.UNAVAILABLE.withDescription(
                                "the gateway is shutting down; resume the stream on another gateway"
                                    + " (resume_token_ids: the token ids received)"),
                            true)))
        .onMessage(RouterUnreachable.class, u -> guarded(() -> onRouterUnreachable(u)))
        .onSignal(Terminated.class, t -> guarded(() -> onRouterGone(t)))
        .onSignal(PostStop.class, s -> onPostStop())
        .build();
  }

  private Behavior<Object> guarded(Runnable step) {
    if (closed) {
      return Behaviors.stopped();
    }
    try {
      step.run();
    } catch (RuntimeException e) {
      log.error("request {}: internal error in the gateway stream", requestId, e);
      fail(
          Status.INTERNAL.withDescription(
              "internal error in the gateway (request " + requestId + ")"),
          true);
    }
    return closed ? Behaviors.stopped() : this;
  }

  private void onAdmitted() {
    if (!submit()) {
      fail(
          Status.UNAVAILABLE.withDescription("no router is available in the cluster; retry later"),
          false);
    }
  }

  /**
   * Sends the request, resumed after the {@link #delivered} tokens, to the least loaded router this
   * call has not lost; false when there is none.
   */
  private boolean submit() {
    var chosen = env.routers().acquire(lost);
    if (chosen.isEmpty()) {
      return false;
    }
    submitTo(chosen.get());
    return true;
  }

  private void submitTo(RouterDirectory.Lease chosen) {
    lease = chosen;
    getContext().watch(lease.router());
    ActorRef<SequenceEvent> self = getContext().getSelf().narrow();
    Submit submit =
        Submit.newBuilder()
            .setRequestId(attemptId)
            .addAllPromptIds(asList(request.promptIds()))
            .setSampling(request.sampling())
            .setMaxTokens(request.maxTokens())
            .addAllStop(request.stop())
            .setIgnoreEos(request.ignoreEos())
            .setLogprobs(request.logprobs())
            .addAllResumeIds(delivered)
            .setReplyTo(ActorRefResolver.get(getContext().getSystem()).toSerializationFormat(self))
            .build();
    lease.router().tell(RouterCommand.newBuilder().setSubmit(submit).build());
    submitted = true;
    if (resubmissions == 0) {
      slot.metrics.submitted(request.promptIds().length);
    }
    sawEvent = false;
    timers.startSingleTimer(
        Signal.FIRST_EVENT_TIMEOUT, Signal.FIRST_EVENT_TIMEOUT, env.firstEventTimeout());
    log.debug(
        "request {} ({}) submitted to {} after {} token(s)",
        attemptId,
        request.clientRequestId(),
        lease.router(),
        delivered.size());
  }

  /**
   * Moves the call from its router, lost for {@code reason}, to another one, if the limits allow
   * and one is left; false (the call still on its router) otherwise.
   */
  private boolean resubmit(String reason) {
    if (resubmissions >= env.maxResubmissions()
        || slot.metrics.deadlinePassed()
        || call.isCancelled()) {
      return false;
    }
    ActorRef<RouterCommand> gone = lease.router();
    Set<ActorRef<RouterCommand>> excluded = lost;
    if (reason.equals(EXHAUSTED)) {
      // Full or out of memory, not lost: skipped for this pick only, so the stream may come back
      // to it should the router it moves to be lost later.
      excluded = new HashSet<>(lost);
      excluded.add(gone);
    } else {
      lost.add(gone);
    }
    var next = env.routers().acquire(excluded);
    if (next.isEmpty()) {
      return false;
    }
    getContext().unwatch(gone);
    if (submitted) {
      // It may be alive behind a partition: if the Cancel reaches it, it stops wasting work.
      gone.tell(
          RouterCommand.newBuilder()
              .setCancel(Cancel.newBuilder().setRequestId(attemptId))
              .build());
    }
    lease.release();
    resubmissions++;
    attemptId = requestId + "/" + resubmissions;
    submitTo(next.get());
    slot.metrics.resubmitted(reason);
    log.info(
        "request {}: router {} lost ({}); resubmitted to {} after {} token(s)",
        attemptId,
        gone,
        reason,
        lease.router(),
        delivered.size());
    return true;
  }

  private void onEvent(SequenceEvent event) {
    if (!event.getRequestId().equals(attemptId)) {
      return; // from a router this call has left: its tokens are replayed by the current one
    }
    if (!sawEvent) {
      sawEvent = true;
      timers.cancel(Signal.FIRST_EVENT_TIMEOUT);
    }
    switch (event.getEventCase()) {
      case TOKEN -> {
        if (finished == null) {
          onToken(event.getToken());
        }
      }
      case FINISHED -> {
        finished = event.getFinished();
        submitted = false; // the router is done with it: nothing to cancel any more
        getContext().unwatch(lease.router()); // its leaving no longer matters to this call
        flush();
      }
      case FAILED -> {
        submitted = false;
        Failed f = event.getFailed();
        // UNAVAILABLE: the router is shutting down or cannot reach an expert; RESOURCE_EXHAUSTED:
        // it is full, or had no memory for the sequence. Another router may serve either.
        String reason =
            Status.Code.UNAVAILABLE.name().equals(f.getCode()) ? "router_unavailable"
                : Status.Code.RESOURCE_EXHAUSTED.name().equals(f.getCode()) ? EXHAUSTED
                : null;
        if (reason == null || !resubmit(reason)) {
          fail(statusOf(f), false);
        }
      }
      default -> {}
    }
  }

  /** Takes the token that comes next in the completion; anything else is a replayed one. */
  private void onToken(TokenChunk token) {
    int expected = delivered.size();
    if (token.getIndex() < expected) {
      log.debug("request {}: token {} already delivered; dropped", attemptId, token.getIndex());
      return;
    }
    if (token.getIndex() > expected) {
      log.error(
          "request {}: token {} arrived, {} expected; the stream cannot go on without a gap",
          attemptId,
          token.getIndex(),
          expected);
      fail(
          Status.INTERNAL.withDescription(
              "internal error in the gateway: a token went missing (request " + requestId + ")"),
          true);
      return;
    }
    delivered.add(token.getTokenId());
    slot.metrics.token();
    pending.add(token);
    flush();
  }

  private static Status statusOf(Failed f) {
    Status.Code code;
    try {
      code = Status.Code.valueOf(f.getCode());
    } catch (IllegalArgumentException e) {
      code = Status.Code.INTERNAL;
    }
    if (code == Status.Code.OK) {
      code = Status.Code.INTERNAL;
    }
    return Status.fromCode(code).withDescription(f.getMessage());
  }

  /** Writes what the client can take now; completes the call after the last message. */
  private void flush() {
    if (mode == Mode.UNARY) {
      while (!pending.isEmpty()) {
        TokenChunk c = pending.poll();
        all.add(c);
        text.append(c.getText());
      }
      if (finished != null) {
        CompleteResponse.Builder b =
            CompleteResponse.newBuilder()
                .setText(text.toString())
                .setFinishReason(finishReason(finished.getReason()))
                .setUsage(usage(finished));
        for (TokenChunk c : all) {
          b.addTokenIds(c.getTokenId());
          if (request.logprobs() > 0) {
            b.addTokens(token(c));
          }
        }
        write(b.build());
        complete();
      }
      return;
    }
    while ((!pending.isEmpty() || finished != null) && call.isReady()) {
      // The index of the first token here; in a last message without tokens, that of the token
      // that would have come next: every token delivered before it (resumed ones included).
      GenerateResponse.Builder b =
          GenerateResponse.newBuilder()
              .setIndex(pending.isEmpty() ? delivered.size() : pending.peek().getIndex());
      StringBuilder delta = new StringBuilder();
      while (!pending.isEmpty() && b.getTokensCount() < MAX_TOKENS_PER_MESSAGE) {
        TokenChunk c = pending.poll();
        b.addTokens(token(c));
        delta.append(c.getText());
      }
      b.setText(delta.toString());
      if (finished != null && pending.isEmpty()) {
        b.setFinishReason(finishReason(finished.getReason())).setUsage(usage(finished));
        write(b.build());
        complete();
        return;
      }
      write(b.build());
    }
  }

  private Token token(TokenChunk c) {
    Token.Builder t = Token.newBuilder().setId(c.getTokenId()).setText(tokenText(c.getTokenId()));
    if (c.hasLogprob()) {
      t.setLogprob(c.getLogprob());
    }
    for (var top : c.getTopList()) {
      t.addTopLogprobs(
          TopLogprob.newBuilder()
              .setId(top.getId())
              .setText(tokenText(top.getId()))
              .setLogprob(top.getLogprob()));
    }
    return t.build();
  }

  private String tokenText(int id) {
    try {
      return env.tokenizer().decode(new int[] {id}, false);
    } catch (RuntimeException e) {
      return "";
    }
  }

  static FinishReason finishReason(String reason) {
    return switch (reason) {
      case "eos" -> FinishReason.FINISH_REASON_STOP;
      case "stop_sequence" -> FinishReason.FINISH_REASON_STOP_SEQUENCE;
      case "length" -> FinishReason.FINISH_REASON_LENGTH;
      case "cancelled" -> FinishReason.FINISH_REASON_CANCELLED;
      default -> FinishReason.FINISH_REASON_STOP;
    };
  }

  private static Usage usage(Finished f) {
    return Usage.newBuilder()
        .setPromptTokens(f.getPromptTokens())
        .setCompletionTokens(f.getCompletionTokens())
        .build();
  }

  private void write(Object message) {
    if (!call.isCancelled()) {
      call.onNext(message);
    }
  }

  private void complete() {
    slot.metrics.ended(Status.Code.OK);
    release(false);
    closed = true;
    if (!call.isCancelled()) {
      call.onCompleted();
    }
  }

  /** Ends the call with an error status (never a stack trace). */
  private void fail(Status status, boolean cancelRouter) {
    if (closed) {
      return;
    }
    slot.metrics.ended(status.getCode());
    release(cancelRouter);
    closed = true;
    try {
      call.onError(status.asRuntimeException());
    } catch (RuntimeException e) {
      log.debug("request {}: could not send {} (call already closed)", requestId, status.getCode());
    }
  }

  private Behavior<Object> onClientCancelled() {
    if (!closed) {
      log.debug("request {}: cancelled by the client or its deadline", requestId);
      slot.metrics.cancelled();
      release(true);
      closed = true;
    }
    return Behaviors.stopped();
  }

  /**
   * The router's node is unreachable: move on now if another router can take the stream (the old
   * one's late events are ignored, should it come back); otherwise keep waiting for it.
   */
  private void onRouterUnreachable(RouterUnreachable u) {
    if (finished == null && lease != null && lease.router().path().address().equals(u.address())) {
      resubmit("router_unreachable");
    }
  }

  private void onRouterGone(Terminated t) {
    if (finished != null || lease == null || !t.getRef().equals(lease.router())) {
      return; // every event is here, or a router this call already left
    }
    submitted = false; // nothing left there to cancel
    if (!resubmit("router_lost")) {
      fail(
          Status.UNAVAILABLE.withDescription(
              "the router serving this request stopped or left the cluster"
                  + (resubmissions > 0 ? " (after " + resubmissions + " resubmission(s))" : "")
                  + " and no other router could continue it; retry the request"),
          false);
    }
  }

  /** Frees everything the call holds, once; tells the router to stop when it may still run. */
  private void release(boolean cancelRouter) {
    timers.cancelAll();
    if (lease != null) {
      if (cancelRouter && submitted) {
        lease
            .router()
            .tell(
                RouterCommand.newBuilder()
                    .setCancel(Cancel.newBuilder().setRequestId(attemptId))
                    .build());
      }
      submitted = false;
      getContext().unwatch(lease.router());
      lease.release();
    }
    slot.close();
  }

  private Behavior<Object> onPostStop() {
    if (!closed) {
      // The actor system is going down under a live call.
      fail(
          Status.UNAVAILABLE.withDescription("the gateway is shutting down; retry the request"),
          true);
    }
    return this;
  }

  private static List<Integer> asList(int[] ids) {
    List<Integer> list = new ArrayList<>(ids.length);
    for (int id : ids) {
      list.add(id);
    }
    return list;
  }
}
