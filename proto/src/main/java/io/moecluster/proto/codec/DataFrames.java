package io.moecluster.proto.codec;

import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.MessageLite;
import com.google.protobuf.Parser;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The framing of the expert data channel ({@code cluster.proto}, "Expert data channel"): an
 * 8-byte greeting, then frames of a 4-byte big-endian length and one protobuf message. Both ends
 * use it, so a frame's limits are checked the same way on both.
 */
public final class DataFrames {
  private DataFrames() {}

  /** What a router sends first and the node answers: the protocol and its version. */
  public static final byte[] GREETING = "MOEDATA1".getBytes(StandardCharsets.US_ASCII);

  /**
   * The largest frame either side accepts. A ComputeExperts chunk is at most
   * {@code moe.router.max-expert-message-bytes} of activations plus a small envelope; a length
   * beyond this is a peer that does not speak the protocol, and the connection is closed rather
   * than the heap filled.
   */
  public static final int MAX_FRAME_BYTES = 64 << 20;

  /**
   * Writes one frame (length and message) in a single write, so concurrent writers need only one
   * lock. It does not flush: a router writes all the calls of a layer to a node and then flushes
   * once, so they reach the node together.
   */
  public static void write(OutputStream out, MessageLite message) throws IOException {
    int size = message.getSerializedSize();
    byte[] frame = new byte[4 + size];
    encode(message, size, frame, 0);
    out.write(frame);
  }

  /**
   * Encodes one frame into {@code dest} at {@code offset}: the 4-byte length, then the message,
   * {@code 4 + size} bytes in all, for writers that keep their own buffer.
   *
   * @param size {@code message.getSerializedSize()}
   */
  public static void encode(MessageLite message, int size, byte[] dest, int offset) {
    dest[offset] = (byte) (size >>> 24);
    dest[offset + 1] = (byte) (size >>> 16);
    dest[offset + 2] = (byte) (size >>> 8);
    dest[offset + 3] = (byte) size;
    CodedOutputStream coded = CodedOutputStream.newInstance(dest, offset + 4, size);
    try {
      message.writeTo(coded);
    } catch (IOException e) { // only when the message does not fit its own serialized size
      throw new IllegalStateException("a message did not fit its serialized size", e);
    }
    coded.checkNoSpaceLeft();
  }

  /**
   * Reads one frame.
   *
   * @return the message, or null at a clean end of stream (before a frame's first byte)
   * @throws IOException on a truncated frame, a length out of range or bytes that do not parse
   */
  public static <T> T read(DataInputStream in, Parser<T> parser) throws IOException {
    int first = in.read();
    if (first < 0) {
      return null;
    }
    int size = checkLength((first << 24) | (in.readUnsignedByte() << 16) | (in.readUnsignedByte() << 8)
        | in.readUnsignedByte());
    byte[] bytes = new byte[size];
    in.readFully(bytes);
    return parser.parseFrom(bytes);
  }

  /**
   * Checks a frame's length prefix, for readers that parse frames out of their own buffers.
   *
   * @return {@code size}
   * @throws IOException when it is out of range: the peer does not speak this protocol
   */
  public static int checkLength(int size) throws IOException {
    if (size < 0 || size > MAX_FRAME_BYTES) {
      throw new IOException("data channel frame of " + Integer.toUnsignedLong(size) + " bytes (at most "
          + MAX_FRAME_BYTES + "): the peer does not speak this protocol");
    }
    return size;
  }

  /** Reads the peer's greeting; IOException when it is not {@link #GREETING}. */
  public static void expectGreeting(InputStream in) throws IOException {
    byte[] got = new byte[GREETING.length];
    int n = 0;
    while (n < got.length) {
      int r = in.read(got, n, got.length - n);
      if (r < 0) {
        throw new EOFException("the peer closed the data channel before its greeting");
      }
      n += r;
    }
    if (!Arrays.equals(got, GREETING)) {
      throw new IOException("the peer does not speak the expert data channel protocol (greeting "
          + new String(got, StandardCharsets.ISO_8859_1).replaceAll("[^\\x20-\\x7e]", "?") + ")");
    }
  }
}
