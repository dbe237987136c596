package io.moecluster.router;

import com.google.protobuf.MessageLite;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCall;
import io.moecluster.proto.cluster.v1.ExpertCallReply;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.DataFrames;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One open connection of {@link ExpertDataChannels}, non-blocking. Calls and hints are framed into
 * its outgoing buffer under a lock and leave on {@link #flush}; what the socket does not take at
 * once is written by whichever thread reads the connections ({@link #writeReady}). Replies are read
 * by that thread ({@link #readReady}), one at a time, and complete their calls' futures there.
 */
final class DataChannelConnection {
  private static final int START_BYTES = 64 << 10;

  private final String endpoint;
  private final SocketChannel channel;
  private final ExpertDataChannels.Timers timers;
  private final AtomicLong ids = new AtomicLong();
  private final Map<Long, Pending> pending = new ConcurrentHashMap<>();
  private volatile IOException failure; // set once the connection is gone
  private volatile SelectionKey key;

  // Outgoing frames, guarded by out: [start, flushed) is released to the socket, [flushed, end)
  // waits for the next flush (the calls of a layer to a node leave in one write).
  private final Object out = new Object();
  private byte[] outBytes = new byte[START_BYTES];
  private int outStart;
  private int outFlushed;
  private int outEnd;
  private volatile boolean unsent; // bytes released to the socket that it has not taken yet

  // Incoming bytes, touched only by the thread that reads the connections.
  private ByteBuffer in = ByteBuffer.allocate(START_BYTES);

  private record Pending(String entityId, CompletableFuture<ExpertReply> reply) {}

  DataChannelConnection(String endpoint, SocketChannel channel, ExpertDataChannels.Timers timers) {
    this.endpoint = endpoint;
    this.channel = channel;
    this.timers = timers;
  }

  String endpoint() {
    return endpoint;
  }

  void registered(SelectionKey key) {
    this.key = key;
  }

  boolean open() {
    return failure == null;
  }

  int inFlight() {
    return pending.size();
  }

  /** Whether a reader is needed: calls wait for replies, or bytes for the socket. */
  boolean needsReader() {
    return !pending.isEmpty() || unsent;
  }

  CompletableFuture<ExpertReply> call(String entityId, ComputeExperts request, Duration timeout) {
    long id = ids.incrementAndGet();
    CompletableFuture<ExpertReply> reply = new CompletableFuture<>();
    pending.put(id, new Pending(entityId, reply));
    Runnable cancelTimeout = timers.after(timeout, () -> reply.completeExceptionally(new TimeoutException(
        "no answer from " + endpoint + " in " + timeout.toMillis() + " ms")));
    reply.whenComplete((r, e) -> { // also when the caller gives up on it
      pending.remove(id);
      cancelTimeout.run();
    });
    append(ExpertCall.newBuilder().setCallId(id).setEntityId(entityId).setCompute(request).build());
    IOException f = failure;
    if (f != null) {
      reply.completeExceptionally(f); // failed before (or while) it was queued
    }
    return reply;
  }

  boolean hint(String entityId) {
    append(ExpertCall.newBuilder().setEntityId(entityId).setPrefetch(true).build());
    return open();
  }

  private void append(MessageLite message) {
    int size = message.getSerializedSize();
    synchronized (out) {
      reserve(4 + size);
      DataFrames.encode(message, size, outBytes, outEnd);
      outEnd += 4 + size;
    }
  }

  /** Room for {@code bytes} more at outEnd: moves the live bytes to the front, or grows. */
  private void reserve(int bytes) {
    if (outEnd + bytes <= outBytes.length) {
      return;
    }
    int live = outEnd - outStart;
    byte[] to = live + bytes <= outBytes.length ? outBytes
        : new byte[Math.max(live + bytes, outBytes.length * 2)];
    System.arraycopy(outBytes, outStart, to, 0, live);
    outFlushed -= outStart;
    outEnd = live;
    outStart = 0;
    outBytes = to;
  }

  /** Bytes queued since the last flush. */
  int unflushedBytes() {
    synchronized (out) {
      return outEnd - outFlushed;
    }
  }

  /**
   * Releases the queued frames to the socket and writes what it takes now.
   *
   * @return true when bytes are left for the reader to write as the socket drains
   */
  boolean flush() {
    if (failure != null) {
      return false;
    }
    try {
      synchronized (out) {
        outFlushed = outEnd;
        return writeReleased();
      }
    } catch (IOException | IllegalStateException e) {
      // IllegalStateException: a fail() on another thread (the reader's, or a close) cancelled the
      // key between writeReleased's isValid() and its interestOps() (CancelledKeyException). The
      // connection is gone either way: its calls fail over as on an IO failure, instead of the
      // exception failing the caller's whole step (every sequence of the batch).
      String why = e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
      fail(new IOException("data channel to " + endpoint + " failed: " + why, e));
      return false;
    }
  }

  /** The socket can take more: called by the reading thread. */
  void writeReady() throws IOException {
    synchronized (out) {
      writeReleased();
    }
  }

  // Guarded by out.
  private boolean writeReleased() throws IOException {
    if (outStart < outFlushed) {
      outStart += channel.write(ByteBuffer.wrap(outBytes, outStart, outFlushed - outStart));
    }
    if (outStart == outEnd) {
      outStart = outFlushed = outEnd = 0;
    }
    boolean left = outStart < outFlushed;
    if (left != unsent) {
      unsent = left;
      SelectionKey k = key;
      if (k != null && k.isValid()) {
        k.interestOps(left ? SelectionKey.OP_READ | SelectionKey.OP_WRITE : SelectionKey.OP_READ);
      }
    }
    return left;
  }

  /** Reads what the socket has and completes the calls it answers: called by the reading thread. */
  void readReady() throws IOException {
    for (;;) {
      int n = channel.read(in);
      if (n < 0) {
        throw new IOException("the expert node closed the data channel " + endpoint);
      }
      if (n == 0) {
        return;
      }
      in.flip();
      while (in.remaining() >= 4) {
        int size = DataFrames.checkLength(in.getInt(in.position()));
        if (in.remaining() < 4 + size) {
          break;
        }
        ExpertCallReply r = ExpertCallReply.parser().parseFrom(in.array(), in.position() + 4, size);
        in.position(in.position() + 4 + size);
        dispatch(r);
      }
      in.compact();
      if (in.position() >= 4) { // a frame larger than the buffer: room for all of it
        int need = 4 + DataFrames.checkLength(in.getInt(0));
        if (need > in.capacity()) {
          in = ByteBuffer.wrap(Arrays.copyOf(in.array(), need)).position(in.position());
        }
      }
    }
  }

  private void dispatch(ExpertCallReply r) {
    // Removed before completing: whoever the reply wakes sees the call gone (inFlight()).
    Pending p = pending.remove(r.getCallId());
    if (p == null) {
      return; // the caller gave up on it (timeout, or a hedge won)
    }
    if (r.getNotHosted()) {
      p.reply().completeExceptionally(new ExpertDataChannels.NotHostedException(p.entityId(), endpoint));
    } else {
      p.reply().complete(r.getReply());
    }
  }

  void fail(IOException why) {
    if (failure == null) {
      failure = why;
    }
    unsent = false;
    SelectionKey k = key;
    if (k != null) {
      k.cancel();
    }
    try {
      channel.close();
    } catch (IOException ignored) {
      // failed anyway
    }
    for (Long id : pending.keySet()) {
      Pending p = pending.remove(id);
      if (p != null) {
        p.reply().completeExceptionally(failure);
      }
    }
  }
}
