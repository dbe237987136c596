package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.moecluster.proto.cluster.v1.Activations;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertReply;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.channels.CancelledKeyException;
import java.nio.channels.SelectableChannel;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * One connection of the router's data channels, at the moment another thread fails it: a flush
 * that finds its selection key cancelled under it fails the connection's calls over (an
 * IOException, as for a lost connection) instead of throwing into the engine's step.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class DataChannelConnectionTest {

  /**
   * A key that is still valid when checked and cancelled when used, as when the reading thread's
   * {@code fail()} cancels it between the two.
   */
  private static final class CancelledOnUse extends SelectionKey {
    private final SelectableChannel channel;

    CancelledOnUse(SelectableChannel channel) {
      this.channel = channel;
    }

    @Override
    public SelectableChannel channel() {
      return channel;
    }

    @Override
    public Selector selector() {
      throw new UnsupportedOperationException();
    }

    @Override
    public boolean isValid() {
      return true;
    }

    @Override
    public void cancel() {}

    @Override
    public int interestOps() {
      throw new CancelledKeyException();
    }

    @Override
    public SelectionKey interestOps(int ops) {
      throw new CancelledKeyException();
    }

    @Override
    public int readyOps() {
      throw new CancelledKeyException();
    }
  }

  @Test
  void aKeyCancelledDuringAFlushFailsTheCallsOverInsteadOfThrowing() throws Exception {
    try (ServerSocketChannel server = ServerSocketChannel.open()) {
      server.setOption(StandardSocketOptions.SO_RCVBUF, 4096); // the node reads nothing: the write stops short
      server.bind(new InetSocketAddress("127.0.0.1", 0));
      try (SocketChannel channel = SocketChannel.open(server.getLocalAddress());
          SocketChannel node = server.accept()) {
        channel.setOption(StandardSocketOptions.SO_SNDBUF, 4096);
        channel.configureBlocking(false);
        DataChannelConnection c = new DataChannelConnection("127.0.0.1:" + node.socket().getLocalPort(), channel,
            (delay, task) -> () -> {});
        c.registered(new CancelledOnUse(channel));
        // More than the socket buffers take: bytes are left, and the flush asks the key for OP_WRITE.
        ComputeExperts big = ComputeExperts.newBuilder().setStepId(1).setLayer(0).setExpert(0)
            .setInput(Activations.newBuilder().setRows(1).setHidden(1 << 18).setData(ByteString.copyFrom(new byte[1 << 20])))
            .build();
        CompletableFuture<ExpertReply> reply = c.call("0/0", big, Duration.ofSeconds(60));

        assertFalse(c.flush(), "nothing left to write on a failed connection");
        assertFalse(c.open());
        ExecutionException e = assertThrows(ExecutionException.class, () -> reply.get(5, TimeUnit.SECONDS));
        assertInstanceOf(IOException.class, e.getCause(), "a connection failure: the router fails over");
        assertTrue(e.getCause().getMessage().contains("CancelledKeyException"), e.getCause().getMessage());
      }
    }
  }
}
