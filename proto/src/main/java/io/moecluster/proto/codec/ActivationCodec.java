package io.moecluster.proto.codec;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.moecluster.proto.cluster.v1.ActivationDType;
import io.moecluster.proto.cluster.v1.Activations;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Converts activation rows between {@code float[]} and the wire's {@link Activations}
 * (little-endian, row-major). F32 is exact, which the cluster needs to give the same tokens as
 * one JVM; BF16 halves the bytes at the cost of rounding.
 */
public final class ActivationCodec {
  private ActivationCodec() {}

  /** Encodes {@code rows x hidden} floats as F32. */
  public static Activations encode(float[] values, int rows, int hidden) {
    if ((long) rows * hidden != values.length) {
      throw new IllegalArgumentException(values.length + " floats for " + rows + " x " + hidden);
    }
    ByteBuffer buf = ByteBuffer.allocate(values.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
    buf.asFloatBuffer().put(values);
    return Activations.newBuilder()
        .setRows(rows)
        .setHidden(hidden)
        .setDtype(ActivationDType.F32)
        .setData(UnsafeByteOperations.unsafeWrap(buf.array())) // buf is ours alone: no copy
        .build();
  }

  /** Decodes to {@code rows x hidden} floats; checks that the byte count matches the shape. */
  public static float[] decode(Activations a) {
    long elements = (long) a.getRows() * a.getHidden();
    ByteString data = a.getData();
    int width =
        switch (a.getDtype()) {
          case F32 -> Float.BYTES;
          case BF16 -> 2;
          case UNRECOGNIZED -> throw new IllegalArgumentException("unknown activation dtype");
        };
    if (elements * width != data.size() || elements > Integer.MAX_VALUE) {
      throw new IllegalArgumentException(
          "activations of " + a.getRows() + " x " + a.getHidden() + " " + a.getDtype() + " need "
              + elements * width + " bytes, got " + data.size());
    }
    float[] out = new float[(int) elements];
    ByteBuffer buf = data.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    if (a.getDtype() == ActivationDType.F32) {
      buf.asFloatBuffer().get(out);
    } else {
      for (int i = 0; i < out.length; i++) {
        out[i] = Float.intBitsToFloat((buf.getShort() & 0xFFFF) << 16);
      }
    }
    return out;
  }
}
