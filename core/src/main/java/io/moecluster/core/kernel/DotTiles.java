package io.moecluster.core.kernel;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * The register-tiled dot products of {@link VectorKernels} (R weight rows x T input rows, F32 and
 * BF16) and {@link #reduce}, the fixed butterfly that sums a vector's lanes. Every tile runs, per
 * (weight row, input row) pair, the one sequence of operations that {@link VectorKernels}'s class
 * comment gives as the reduction order, so tiles can be mixed freely and a row's result never
 * depends on its batch. Each tile is written out in full, one local per accumulator; a change to
 * one is a change to its siblings, which {@code VectorKernelsTest} checks bit for bit.
 */
final class DotTiles {
  private DotTiles() {}

  private static final VectorSpecies<Float> F = VectorKernels.F;
  private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
  private static final int VL = VectorKernels.VL;
  private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
  private static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfShort I16_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Butterfly shuffles for {@link #reduce}: lane i takes lane i ^ step, step = VL/2 .. 1. */
  private static final VectorShuffle<Float>[] BIG_STEPS = bigSteps();
  private static final VectorShuffle<Float> STEP8 = swap(8);
  private static final VectorShuffle<Float> STEP4 = swap(4);
  private static final VectorShuffle<Float> STEP2 = swap(2);
  private static final VectorShuffle<Float> STEP1 = swap(1);

  /** 1 weight row(s) x 1 input row(s), F32: out[oo + t*ostride + k] = dot(w row k, x row t). */
  static void f32Rows1x1(MemorySegment w, long row, long rowBytes, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * rowBytes;
    int x0 = xo + 0 * cols;
    FloatVector a00 = FloatVector.zero(F);
    int c = 0;
    int bound = F.loopBound(cols);
    for (; c < bound; c += VL) {
      FloatVector v0 = FloatVector.fromMemorySegment(F, w, w0 + 4L * c, LE);
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = v0.fma(y0, a00);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (; c < cols; c++) {
      float u0 = w.get(F32_LE, w0 + 4L * c);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
    }
    out[oo + 0 * ostride + 0] = s00;
  }

  /** 4 weight row(s) x 1 input row(s), F32: out[oo + t*ostride + k*gap] = dot(w row k*gap, x row t). */
  static void f32Rows4x1(MemorySegment w, long row, long rowBytes, int gap, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * gap * rowBytes;
    long w1 = row + 1L * gap * rowBytes;
    long w2 = row + 2L * gap * rowBytes;
    long w3 = row + 3L * gap * rowBytes;
    int x0 = xo + 0 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a10 = FloatVector.zero(F);
    FloatVector a20 = FloatVector.zero(F);
    FloatVector a30 = FloatVector.zero(F);
    int c = 0;
    int bound = F.loopBound(cols);
    for (; c < bound; c += VL) {
      FloatVector v0 = FloatVector.fromMemorySegment(F, w, w0 + 4L * c, LE);
      FloatVector v1 = FloatVector.fromMemorySegment(F, w, w1 + 4L * c, LE);
      FloatVector v2 = FloatVector.fromMemorySegment(F, w, w2 + 4L * c, LE);
      FloatVector v3 = FloatVector.fromMemorySegment(F, w, w3 + 4L * c, LE);
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = v0.fma(y0, a00);
      a10 = v1.fma(y0, a10);
      a20 = v2.fma(y0, a20);
      a30 = v3.fma(y0, a30);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a10 = a10.add(a10.rearrange(sh));
    }
    if (VL >= 16) {
      a10 = a10.add(a10.rearrange(STEP8));
    }
    if (VL >= 8) {
      a10 = a10.add(a10.rearrange(STEP4));
    }
    a10 = a10.add(a10.rearrange(STEP2));
    a10 = a10.add(a10.rearrange(STEP1));
    float s10 = a10.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a20 = a20.add(a20.rearrange(sh));
    }
    if (VL >= 16) {
      a20 = a20.add(a20.rearrange(STEP8));
    }
    if (VL >= 8) {
      a20 = a20.add(a20.rearrange(STEP4));
    }
    a20 = a20.add(a20.rearrange(STEP2));
    a20 = a20.add(a20.rearrange(STEP1));
    float s20 = a20.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a30 = a30.add(a30.rearrange(sh));
    }
    if (VL >= 16) {
      a30 = a30.add(a30.rearrange(STEP8));
    }
    if (VL >= 8) {
      a30 = a30.add(a30.rearrange(STEP4));
    }
    a30 = a30.add(a30.rearrange(STEP2));
    a30 = a30.add(a30.rearrange(STEP1));
    float s30 = a30.lane(0);
    for (; c < cols; c++) {
      float u0 = w.get(F32_LE, w0 + 4L * c);
      float u1 = w.get(F32_LE, w1 + 4L * c);
      float u2 = w.get(F32_LE, w2 + 4L * c);
      float u3 = w.get(F32_LE, w3 + 4L * c);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      s10 = Math.fma(u1, q0, s10);
      s20 = Math.fma(u2, q0, s20);
      s30 = Math.fma(u3, q0, s30);
    }
    out[oo + 0 * ostride + 0 * gap] = s00;
    out[oo + 0 * ostride + 1 * gap] = s10;
    out[oo + 0 * ostride + 2 * gap] = s20;
    out[oo + 0 * ostride + 3 * gap] = s30;
  }

  /** 4 weight row(s) x 4 input row(s), F32: out[oo + t*ostride + k*gap] = dot(w row k*gap, x row t). */
  static void f32Rows4x4(MemorySegment w, long row, long rowBytes, int gap, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * gap * rowBytes;
    long w1 = row + 1L * gap * rowBytes;
    long w2 = row + 2L * gap * rowBytes;
    long w3 = row + 3L * gap * rowBytes;
    int x0 = xo + 0 * cols;
    int x1 = xo + 1 * cols;
    int x2 = xo + 2 * cols;
    int x3 = xo + 3 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a01 = FloatVector.zero(F);
    FloatVector a02 = FloatVector.zero(F);
    FloatVector a03 = FloatVector.zero(F);
    FloatVector a10 = FloatVector.zero(F);
    FloatVector a11 = FloatVector.zero(F);
    FloatVector a12 = FloatVector.zero(F);
    FloatVector a13 = FloatVector.zero(F);
    FloatVector a20 = FloatVector.zero(F);
    FloatVector a21 = FloatVector.zero(F);
    FloatVector a22 = FloatVector.zero(F);
    FloatVector a23 = FloatVector.zero(F);
    FloatVector a30 = FloatVector.zero(F);
    FloatVector a31 = FloatVector.zero(F);
    FloatVector a32 = FloatVector.zero(F);
    FloatVector a33 = FloatVector.zero(F);
    int c = 0;
    int bound = F.loopBound(cols);
    for (; c < bound; c += VL) {
      FloatVector v0 = FloatVector.fromMemorySegment(F, w, w0 + 4L * c, LE);
      FloatVector v1 = FloatVector.fromMemorySegment(F, w, w1 + 4L * c, LE);
      FloatVector v2 = FloatVector.fromMemorySegment(F, w, w2 + 4L * c, LE);
      FloatVector v3 = FloatVector.fromMemorySegment(F, w, w3 + 4L * c, LE);
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = v0.fma(y0, a00);
      a10 = v1.fma(y0, a10);
      a20 = v2.fma(y0, a20);
      a30 = v3.fma(y0, a30);
      FloatVector y1 = FloatVector.fromArray(F, x, x1 + c);
      a01 = v0.fma(y1, a01);
      a11 = v1.fma(y1, a11);
      a21 = v2.fma(y1, a21);
      a31 = v3.fma(y1, a31);
      FloatVector y2 = FloatVector.fromArray(F, x, x2 + c);
      a02 = v0.fma(y2, a02);
      a12 = v1.fma(y2, a12);
      a22 = v2.fma(y2, a22);
      a32 = v3.fma(y2, a32);
      FloatVector y3 = FloatVector.fromArray(F, x, x3 + c);
      a03 = v0.fma(y3, a03);
      a13 = v1.fma(y3, a13);
      a23 = v2.fma(y3, a23);
      a33 = v3.fma(y3, a33);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a01 = a01.add(a01.rearrange(sh));
    }
    if (VL >= 16) {
      a01 = a01.add(a01.rearrange(STEP8));
    }
    if (VL >= 8) {
      a01 = a01.add(a01.rearrange(STEP4));
    }
    a01 = a01.add(a01.rearrange(STEP2));
    a01 = a01.add(a01.rearrange(STEP1));
    float s01 = a01.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a02 = a02.add(a02.rearrange(sh));
    }
    if (VL >= 16) {
      a02 = a02.add(a02.rearrange(STEP8));
    }
    if (VL >= 8) {
      a02 = a02.add(a02.rearrange(STEP4));
    }
    a02 = a02.add(a02.rearrange(STEP2));
    a02 = a02.add(a02.rearrange(STEP1));
    float s02 = a02.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a03 = a03.add(a03.rearrange(sh));
    }
    if (VL >= 16) {
      a03 = a03.add(a03.rearrange(STEP8));
    }
    if (VL >= 8) {
      a03 = a03.add(a03.rearrange(STEP4));
    }
    a03 = a03.add(a03.rearrange(STEP2));
    a03 = a03.add(a03.rearrange(STEP1));
    float s03 = a03.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a10 = a10.add(a10.rearrange(sh));
    }
    if (VL >= 16) {
      a10 = a10.add(a10.rearrange(STEP8));
    }
    if (VL >= 8) {
      a10 = a10.add(a10.rearrange(STEP4));
    }
    a10 = a10.add(a10.rearrange(STEP2));
    a10 = a10.add(a10.rearrange(STEP1));
    float s10 = a10.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a11 = a11.add(a11.rearrange(sh));
    }
    if (VL >= 16) {
      a11 = a11.add(a11.rearrange(STEP8));
    }
    if (VL >= 8) {
      a11 = a11.add(a11.rearrange(STEP4));
    }
    a11 = a11.add(a11.rearrange(STEP2));
    a11 = a11.add(a11.rearrange(STEP1));
    float s11 = a11.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a12 = a12.add(a12.rearrange(sh));
    }
    if (VL >= 16) {
      a12 = a12.add(a12.rearrange(STEP8));
    }
    if (VL >= 8) {
      a12 = a12.add(a12.rearrange(STEP4));
    }
    a12 = a12.add(a12.rearrange(STEP2));
    a12 = a12.add(a12.rearrange(STEP1));
    float s12 = a12.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a13 = a13.add(a13.rearrange(sh));
    }
    if (VL >= 16) {
      a13 = a13.add(a13.rearrange(STEP8));
    }
    if (VL >= 8) {
      a13 = a13.add(a13.rearrange(STEP4));
    }
    a13 = a13.add(a13.rearrange(STEP2));
    a13 = a13.add(a13.rearrange(STEP1));
    float s13 = a13.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a20 = a20.add(a20.rearrange(sh));
    }
    if (VL >= 16) {
      a20 = a20.add(a20.rearrange(STEP8));
    }
    if (VL >= 8) {
      a20 = a20.add(a20.rearrange(STEP4));
    }
    a20 = a20.add(a20.rearrange(STEP2));
    a20 = a20.add(a20.rearrange(STEP1));
    float s20 = a20.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a21 = a21.add(a21.rearrange(sh));
    }
    if (VL >= 16) {
      a21 = a21.add(a21.rearrange(STEP8));
    }
    if (VL >= 8) {
      a21 = a21.add(a21.rearrange(STEP4));
    }
    a21 = a21.add(a21.rearrange(STEP2));
    a21 = a21.add(a21.rearrange(STEP1));
    float s21 = a21.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a22 = a22.add(a22.rearrange(sh));
    }
    if (VL >= 16) {
      a22 = a22.add(a22.rearrange(STEP8));
    }
    if (VL >= 8) {
      a22 = a22.add(a22.rearrange(STEP4));
    }
    a22 = a22.add(a22.rearrange(STEP2));
    a22 = a22.add(a22.rearrange(STEP1));
    float s22 = a22.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a23 = a23.add(a23.rearrange(sh));
    }
    if (VL >= 16) {
      a23 = a23.add(a23.rearrange(STEP8));
    }
    if (VL >= 8) {
      a23 = a23.add(a23.rearrange(STEP4));
    }
    a23 = a23.add(a23.rearrange(STEP2));
    a23 = a23.add(a23.rearrange(STEP1));
    float s23 = a23.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a30 = a30.add(a30.rearrange(sh));
    }
    if (VL >= 16) {
      a30 = a30.add(a30.rearrange(STEP8));
    }
    if (VL >= 8) {
      a30 = a30.add(a30.rearrange(STEP4));
    }
    a30 = a30.add(a30.rearrange(STEP2));
    a30 = a30.add(a30.rearrange(STEP1));
    float s30 = a30.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a31 = a31.add(a31.rearrange(sh));
    }
    if (VL >= 16) {
      a31 = a31.add(a31.rearrange(STEP8));
    }
    if (VL >= 8) {
      a31 = a31.add(a31.rearrange(STEP4));
    }
    a31 = a31.add(a31.rearrange(STEP2));
    a31 = a31.add(a31.rearrange(STEP1));
    float s31 = a31.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a32 = a32.add(a32.rearrange(sh));
    }
    if (VL >= 16) {
      a32 = a32.add(a32.rearrange(STEP8));
    }
    if (VL >= 8) {
      a32 = a32.add(a32.rearrange(STEP4));
    }
    a32 = a32.add(a32.rearrange(STEP2));
    a32 = a32.add(a32.rearrange(STEP1));
    float s32 = a32.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a33 = a33.add(a33.rearrange(sh));
    }
    if (VL >= 16) {
      a33 = a33.add(a33.rearrange(STEP8));
    }
    if (VL >= 8) {
      a33 = a33.add(a33.rearrange(STEP4));
    }
    a33 = a33.add(a33.rearrange(STEP2));
    a33 = a33.add(a33.rearrange(STEP1));
    float s33 = a33.lane(0);
    for (; c < cols; c++) {
      float u0 = w.get(F32_LE, w0 + 4L * c);
      float u1 = w.get(F32_LE, w1 + 4L * c);
      float u2 = w.get(F32_LE, w2 + 4L * c);
      float u3 = w.get(F32_LE, w3 + 4L * c);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      s10 = Math.fma(u1, q0, s10);
      s20 = Math.fma(u2, q0, s20);
      s30 = Math.fma(u3, q0, s30);
      float q1 = x[x1 + c];
      s01 = Math.fma(u0, q1, s01);
      s11 = Math.fma(u1, q1, s11);
      s21 = Math.fma(u2, q1, s21);
      s31 = Math.fma(u3, q1, s31);
      float q2 = x[x2 + c];
      s02 = Math.fma(u0, q2, s02);
      s12 = Math.fma(u1, q2, s12);
      s22 = Math.fma(u2, q2, s22);
      s32 = Math.fma(u3, q2, s32);
      float q3 = x[x3 + c];
      s03 = Math.fma(u0, q3, s03);
      s13 = Math.fma(u1, q3, s13);
      s23 = Math.fma(u2, q3, s23);
      s33 = Math.fma(u3, q3, s33);
    }
    out[oo + 0 * ostride + 0 * gap] = s00;
    out[oo + 0 * ostride + 1 * gap] = s10;
    out[oo + 0 * ostride + 2 * gap] = s20;
    out[oo + 0 * ostride + 3 * gap] = s30;
    out[oo + 1 * ostride + 0 * gap] = s01;
    out[oo + 1 * ostride + 1 * gap] = s11;
    out[oo + 1 * ostride + 2 * gap] = s21;
    out[oo + 1 * ostride + 3 * gap] = s31;
    out[oo + 2 * ostride + 0 * gap] = s02;
    out[oo + 2 * ostride + 1 * gap] = s12;
    out[oo + 2 * ostride + 2 * gap] = s22;
    out[oo + 2 * ostride + 3 * gap] = s32;
    out[oo + 3 * ostride + 0 * gap] = s03;
    out[oo + 3 * ostride + 1 * gap] = s13;
    out[oo + 3 * ostride + 2 * gap] = s23;
    out[oo + 3 * ostride + 3 * gap] = s33;
  }

  /** 1 weight row(s) x 4 input row(s), F32: out[oo + t*ostride + k] = dot(w row k, x row t). */
  static void f32Rows1x4(MemorySegment w, long row, long rowBytes, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * rowBytes;
    int x0 = xo + 0 * cols;
    int x1 = xo + 1 * cols;
    int x2 = xo + 2 * cols;
    int x3 = xo + 3 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a01 = FloatVector.zero(F);
    FloatVector a02 = FloatVector.zero(F);
    FloatVector a03 = FloatVector.zero(F);
    int c = 0;
    int bound = F.loopBound(cols);
    for (; c < bound; c += VL) {
      FloatVector v0 = FloatVector.fromMemorySegment(F, w, w0 + 4L * c, LE);
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = v0.fma(y0, a00);
      FloatVector y1 = FloatVector.fromArray(F, x, x1 + c);
      a01 = v0.fma(y1, a01);
      FloatVector y2 = FloatVector.fromArray(F, x, x2 + c);
      a02 = v0.fma(y2, a02);
      FloatVector y3 = FloatVector.fromArray(F, x, x3 + c);
      a03 = v0.fma(y3, a03);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a01 = a01.add(a01.rearrange(sh));
    }
    if (VL >= 16) {
      a01 = a01.add(a01.rearrange(STEP8));
    }
    if (VL >= 8) {
      a01 = a01.add(a01.rearrange(STEP4));
    }
    a01 = a01.add(a01.rearrange(STEP2));
    a01 = a01.add(a01.rearrange(STEP1));
    float s01 = a01.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a02 = a02.add(a02.rearrange(sh));
    }
    if (VL >= 16) {
      a02 = a02.add(a02.rearrange(STEP8));
    }
    if (VL >= 8) {
      a02 = a02.add(a02.rearrange(STEP4));
    }
    a02 = a02.add(a02.rearrange(STEP2));
    a02 = a02.add(a02.rearrange(STEP1));
    float s02 = a02.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a03 = a03.add(a03.rearrange(sh));
    }
    if (VL >= 16) {
      a03 = a03.add(a03.rearrange(STEP8));
    }
    if (VL >= 8) {
      a03 = a03.add(a03.rearrange(STEP4));
    }
    a03 = a03.add(a03.rearrange(STEP2));
    a03 = a03.add(a03.rearrange(STEP1));
    float s03 = a03.lane(0);
    for (; c < cols; c++) {
      float u0 = w.get(F32_LE, w0 + 4L * c);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      float q1 = x[x1 + c];
      s01 = Math.fma(u0, q1, s01);
      float q2 = x[x2 + c];
      s02 = Math.fma(u0, q2, s02);
      float q3 = x[x3 + c];
      s03 = Math.fma(u0, q3, s03);
    }
    out[oo + 0 * ostride + 0] = s00;
    out[oo + 1 * ostride + 0] = s01;
    out[oo + 2 * ostride + 0] = s02;
    out[oo + 3 * ostride + 0] = s03;
  }

  /** 1 weight row(s) x 1 input row(s), BF16: out[oo + t*ostride + k] = dot(w row k, x row t). */
  static void bf16Rows1x1(MemorySegment w, long row, long rowBytes, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * rowBytes;
    int x0 = xo + 0 * cols;
    FloatVector a00 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
    }
    out[oo + 0 * ostride + 0] = s00;
  }

  /** 4 weight row(s) x 1 input row(s), BF16: out[oo + t*ostride + k*gap] = dot(w row k*gap, x row t). */
  static void bf16Rows4x1(MemorySegment w, long row, long rowBytes, int gap, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * gap * rowBytes;
    long w1 = row + 1L * gap * rowBytes;
    long w2 = row + 2L * gap * rowBytes;
    long w3 = row + 3L * gap * rowBytes;
    int x0 = xo + 0 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a10 = FloatVector.zero(F);
    FloatVector a20 = FloatVector.zero(F);
    FloatVector a30 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      IntVector p1 = IntVector.fromMemorySegment(I, w, w1 + 2L * c, LE);
      IntVector p2 = IntVector.fromMemorySegment(I, w, w2 + 2L * c, LE);
      IntVector p3 = IntVector.fromMemorySegment(I, w, w3 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      a10 = e1.fma(y0, a10);
      a20 = e2.fma(y0, a20);
      a30 = e3.fma(y0, a30);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o1 = p1.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o2 = p2.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o3 = p3.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
      a10 = o1.fma(z0, a10);
      a20 = o2.fma(z0, a20);
      a30 = o3.fma(z0, a30);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a10 = a10.add(a10.rearrange(sh));
    }
    if (VL >= 16) {
      a10 = a10.add(a10.rearrange(STEP8));
    }
    if (VL >= 8) {
      a10 = a10.add(a10.rearrange(STEP4));
    }
    a10 = a10.add(a10.rearrange(STEP2));
    a10 = a10.add(a10.rearrange(STEP1));
    float s10 = a10.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a20 = a20.add(a20.rearrange(sh));
    }
    if (VL >= 16) {
      a20 = a20.add(a20.rearrange(STEP8));
    }
    if (VL >= 8) {
      a20 = a20.add(a20.rearrange(STEP4));
    }
    a20 = a20.add(a20.rearrange(STEP2));
    a20 = a20.add(a20.rearrange(STEP1));
    float s20 = a20.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a30 = a30.add(a30.rearrange(sh));
    }
    if (VL >= 16) {
      a30 = a30.add(a30.rearrange(STEP8));
    }
    if (VL >= 8) {
      a30 = a30.add(a30.rearrange(STEP4));
    }
    a30 = a30.add(a30.rearrange(STEP2));
    a30 = a30.add(a30.rearrange(STEP1));
    float s30 = a30.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float u1 = Float.intBitsToFloat(w.get(I16_LE, w1 + 2L * c) << 16);
      float u2 = Float.intBitsToFloat(w.get(I16_LE, w2 + 2L * c) << 16);
      float u3 = Float.intBitsToFloat(w.get(I16_LE, w3 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      s10 = Math.fma(u1, q0, s10);
      s20 = Math.fma(u2, q0, s20);
      s30 = Math.fma(u3, q0, s30);
    }
    out[oo + 0 * ostride + 0 * gap] = s00;
    out[oo + 0 * ostride + 1 * gap] = s10;
    out[oo + 0 * ostride + 2 * gap] = s20;
    out[oo + 0 * ostride + 3 * gap] = s30;
  }

  /** 8 weight row(s) x 1 input row(s), BF16: out[oo + t*ostride + k*gap] = dot(w row k*gap, x row t). */
  static void bf16Rows8x1(MemorySegment w, long row, long rowBytes, int gap, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * gap * rowBytes;
    long w1 = row + 1L * gap * rowBytes;
    long w2 = row + 2L * gap * rowBytes;
    long w3 = row + 3L * gap * rowBytes;
    long w4 = row + 4L * gap * rowBytes;
    long w5 = row + 5L * gap * rowBytes;
    long w6 = row + 6L * gap * rowBytes;
    long w7 = row + 7L * gap * rowBytes;
    int x0 = xo + 0 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a10 = FloatVector.zero(F);
    FloatVector a20 = FloatVector.zero(F);
    FloatVector a30 = FloatVector.zero(F);
    FloatVector a40 = FloatVector.zero(F);
    FloatVector a50 = FloatVector.zero(F);
    FloatVector a60 = FloatVector.zero(F);
    FloatVector a70 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      IntVector p1 = IntVector.fromMemorySegment(I, w, w1 + 2L * c, LE);
      IntVector p2 = IntVector.fromMemorySegment(I, w, w2 + 2L * c, LE);
      IntVector p3 = IntVector.fromMemorySegment(I, w, w3 + 2L * c, LE);
      IntVector p4 = IntVector.fromMemorySegment(I, w, w4 + 2L * c, LE);
      IntVector p5 = IntVector.fromMemorySegment(I, w, w5 + 2L * c, LE);
      IntVector p6 = IntVector.fromMemorySegment(I, w, w6 + 2L * c, LE);
      IntVector p7 = IntVector.fromMemorySegment(I, w, w7 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e4 = p4.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e5 = p5.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e6 = p6.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e7 = p7.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      a10 = e1.fma(y0, a10);
      a20 = e2.fma(y0, a20);
      a30 = e3.fma(y0, a30);
      a40 = e4.fma(y0, a40);
      a50 = e5.fma(y0, a50);
      a60 = e6.fma(y0, a60);
      a70 = e7.fma(y0, a70);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o1 = p1.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o2 = p2.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o3 = p3.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o4 = p4.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o5 = p5.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o6 = p6.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o7 = p7.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
      a10 = o1.fma(z0, a10);
      a20 = o2.fma(z0, a20);
      a30 = o3.fma(z0, a30);
      a40 = o4.fma(z0, a40);
      a50 = o5.fma(z0, a50);
      a60 = o6.fma(z0, a60);
      a70 = o7.fma(z0, a70);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a10 = a10.add(a10.rearrange(sh));
    }
    if (VL >= 16) {
      a10 = a10.add(a10.rearrange(STEP8));
    }
    if (VL >= 8) {
      a10 = a10.add(a10.rearrange(STEP4));
    }
    a10 = a10.add(a10.rearrange(STEP2));
    a10 = a10.add(a10.rearrange(STEP1));
    float s10 = a10.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a20 = a20.add(a20.rearrange(sh));
    }
    if (VL >= 16) {
      a20 = a20.add(a20.rearrange(STEP8));
    }
    if (VL >= 8) {
      a20 = a20.add(a20.rearrange(STEP4));
    }
    a20 = a20.add(a20.rearrange(STEP2));
    a20 = a20.add(a20.rearrange(STEP1));
    float s20 = a20.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a30 = a30.add(a30.rearrange(sh));
    }
    if (VL >= 16) {
      a30 = a30.add(a30.rearrange(STEP8));
    }
    if (VL >= 8) {
      a30 = a30.add(a30.rearrange(STEP4));
    }
    a30 = a30.add(a30.rearrange(STEP2));
    a30 = a30.add(a30.rearrange(STEP1));
    float s30 = a30.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a40 = a40.add(a40.rearrange(sh));
    }
    if (VL >= 16) {
      a40 = a40.add(a40.rearrange(STEP8));
    }
    if (VL >= 8) {
      a40 = a40.add(a40.rearrange(STEP4));
    }
    a40 = a40.add(a40.rearrange(STEP2));
    a40 = a40.add(a40.rearrange(STEP1));
    float s40 = a40.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a50 = a50.add(a50.rearrange(sh));
    }
    if (VL >= 16) {
      a50 = a50.add(a50.rearrange(STEP8));
    }
    if (VL >= 8) {
      a50 = a50.add(a50.rearrange(STEP4));
    }
    a50 = a50.add(a50.rearrange(STEP2));
    a50 = a50.add(a50.rearrange(STEP1));
    float s50 = a50.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a60 = a60.add(a60.rearrange(sh));
    }
    if (VL >= 16) {
      a60 = a60.add(a60.rearrange(STEP8));
    }
    if (VL >= 8) {
      a60 = a60.add(a60.rearrange(STEP4));
    }
    a60 = a60.add(a60.rearrange(STEP2));
    a60 = a60.add(a60.rearrange(STEP1));
    float s60 = a60.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a70 = a70.add(a70.rearrange(sh));
    }
    if (VL >= 16) {
      a70 = a70.add(a70.rearrange(STEP8));
    }
    if (VL >= 8) {
      a70 = a70.add(a70.rearrange(STEP4));
    }
    a70 = a70.add(a70.rearrange(STEP2));
    a70 = a70.add(a70.rearrange(STEP1));
    float s70 = a70.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float u1 = Float.intBitsToFloat(w.get(I16_LE, w1 + 2L * c) << 16);
      float u2 = Float.intBitsToFloat(w.get(I16_LE, w2 + 2L * c) << 16);
      float u3 = Float.intBitsToFloat(w.get(I16_LE, w3 + 2L * c) << 16);
      float u4 = Float.intBitsToFloat(w.get(I16_LE, w4 + 2L * c) << 16);
      float u5 = Float.intBitsToFloat(w.get(I16_LE, w5 + 2L * c) << 16);
      float u6 = Float.intBitsToFloat(w.get(I16_LE, w6 + 2L * c) << 16);
      float u7 = Float.intBitsToFloat(w.get(I16_LE, w7 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      s10 = Math.fma(u1, q0, s10);
      s20 = Math.fma(u2, q0, s20);
      s30 = Math.fma(u3, q0, s30);
      s40 = Math.fma(u4, q0, s40);
      s50 = Math.fma(u5, q0, s50);
      s60 = Math.fma(u6, q0, s60);
      s70 = Math.fma(u7, q0, s70);
    }
    out[oo + 0 * ostride + 0 * gap] = s00;
    out[oo + 0 * ostride + 1 * gap] = s10;
    out[oo + 0 * ostride + 2 * gap] = s20;
    out[oo + 0 * ostride + 3 * gap] = s30;
    out[oo + 0 * ostride + 4 * gap] = s40;
    out[oo + 0 * ostride + 5 * gap] = s50;
    out[oo + 0 * ostride + 6 * gap] = s60;
    out[oo + 0 * ostride + 7 * gap] = s70;
  }

  /** 4 weight row(s) x 4 input row(s), BF16: out[oo + t*ostride + k*gap] = dot(w row k*gap, x row t). */
  static void bf16Rows4x4(MemorySegment w, long row, long rowBytes, int gap, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * gap * rowBytes;
    long w1 = row + 1L * gap * rowBytes;
    long w2 = row + 2L * gap * rowBytes;
    long w3 = row + 3L * gap * rowBytes;
    int x0 = xo + 0 * cols;
    int x1 = xo + 1 * cols;
    int x2 = xo + 2 * cols;
    int x3 = xo + 3 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a01 = FloatVector.zero(F);
    FloatVector a02 = FloatVector.zero(F);
    FloatVector a03 = FloatVector.zero(F);
    FloatVector a10 = FloatVector.zero(F);
    FloatVector a11 = FloatVector.zero(F);
    FloatVector a12 = FloatVector.zero(F);
    FloatVector a13 = FloatVector.zero(F);
    FloatVector a20 = FloatVector.zero(F);
    FloatVector a21 = FloatVector.zero(F);
    FloatVector a22 = FloatVector.zero(F);
    FloatVector a23 = FloatVector.zero(F);
    FloatVector a30 = FloatVector.zero(F);
    FloatVector a31 = FloatVector.zero(F);
    FloatVector a32 = FloatVector.zero(F);
    FloatVector a33 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      IntVector p1 = IntVector.fromMemorySegment(I, w, w1 + 2L * c, LE);
      IntVector p2 = IntVector.fromMemorySegment(I, w, w2 + 2L * c, LE);
      IntVector p3 = IntVector.fromMemorySegment(I, w, w3 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      a10 = e1.fma(y0, a10);
      a20 = e2.fma(y0, a20);
      a30 = e3.fma(y0, a30);
      FloatVector y1 = FloatVector.fromArray(F, x, x1 + c);
      a01 = e0.fma(y1, a01);
      a11 = e1.fma(y1, a11);
      a21 = e2.fma(y1, a21);
      a31 = e3.fma(y1, a31);
      FloatVector y2 = FloatVector.fromArray(F, x, x2 + c);
      a02 = e0.fma(y2, a02);
      a12 = e1.fma(y2, a12);
      a22 = e2.fma(y2, a22);
      a32 = e3.fma(y2, a32);
      FloatVector y3 = FloatVector.fromArray(F, x, x3 + c);
      a03 = e0.fma(y3, a03);
      a13 = e1.fma(y3, a13);
      a23 = e2.fma(y3, a23);
      a33 = e3.fma(y3, a33);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o1 = p1.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o2 = p2.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o3 = p3.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
      a10 = o1.fma(z0, a10);
      a20 = o2.fma(z0, a20);
      a30 = o3.fma(z0, a30);
      FloatVector z1 = FloatVector.fromArray(F, x, x1 + c + VL);
      a01 = o0.fma(z1, a01);
      a11 = o1.fma(z1, a11);
      a21 = o2.fma(z1, a21);
      a31 = o3.fma(z1, a31);
      FloatVector z2 = FloatVector.fromArray(F, x, x2 + c + VL);
      a02 = o0.fma(z2, a02);
      a12 = o1.fma(z2, a12);
      a22 = o2.fma(z2, a22);
      a32 = o3.fma(z2, a32);
      FloatVector z3 = FloatVector.fromArray(F, x, x3 + c + VL);
      a03 = o0.fma(z3, a03);
      a13 = o1.fma(z3, a13);
      a23 = o2.fma(z3, a23);
      a33 = o3.fma(z3, a33);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a01 = a01.add(a01.rearrange(sh));
    }
    if (VL >= 16) {
      a01 = a01.add(a01.rearrange(STEP8));
    }
    if (VL >= 8) {
      a01 = a01.add(a01.rearrange(STEP4));
    }
    a01 = a01.add(a01.rearrange(STEP2));
    a01 = a01.add(a01.rearrange(STEP1));
    float s01 = a01.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a02 = a02.add(a02.rearrange(sh));
    }
    if (VL >= 16) {
      a02 = a02.add(a02.rearrange(STEP8));
    }
    if (VL >= 8) {
      a02 = a02.add(a02.rearrange(STEP4));
    }
    a02 = a02.add(a02.rearrange(STEP2));
    a02 = a02.add(a02.rearrange(STEP1));
    float s02 = a02.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a03 = a03.add(a03.rearrange(sh));
    }
    if (VL >= 16) {
      a03 = a03.add(a03.rearrange(STEP8));
    }
    if (VL >= 8) {
      a03 = a03.add(a03.rearrange(STEP4));
    }
    a03 = a03.add(a03.rearrange(STEP2));
    a03 = a03.add(a03.rearrange(STEP1));
    float s03 = a03.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a10 = a10.add(a10.rearrange(sh));
    }
    if (VL >= 16) {
      a10 = a10.add(a10.rearrange(STEP8));
    }
    if (VL >= 8) {
      a10 = a10.add(a10.rearrange(STEP4));
    }
    a10 = a10.add(a10.rearrange(STEP2));
    a10 = a10.add(a10.rearrange(STEP1));
    float s10 = a10.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a11 = a11.add(a11.rearrange(sh));
    }
    if (VL >= 16) {
      a11 = a11.add(a11.rearrange(STEP8));
    }
    if (VL >= 8) {
      a11 = a11.add(a11.rearrange(STEP4));
    }
    a11 = a11.add(a11.rearrange(STEP2));
    a11 = a11.add(a11.rearrange(STEP1));
    float s11 = a11.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a12 = a12.add(a12.rearrange(sh));
    }
    if (VL >= 16) {
      a12 = a12.add(a12.rearrange(STEP8));
    }
    if (VL >= 8) {
      a12 = a12.add(a12.rearrange(STEP4));
    }
    a12 = a12.add(a12.rearrange(STEP2));
    a12 = a12.add(a12.rearrange(STEP1));
    float s12 = a12.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a13 = a13.add(a13.rearrange(sh));
    }
    if (VL >= 16) {
      a13 = a13.add(a13.rearrange(STEP8));
    }
    if (VL >= 8) {
      a13 = a13.add(a13.rearrange(STEP4));
    }
    a13 = a13.add(a13.rearrange(STEP2));
    a13 = a13.add(a13.rearrange(STEP1));
    float s13 = a13.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a20 = a20.add(a20.rearrange(sh));
    }
    if (VL >= 16) {
      a20 = a20.add(a20.rearrange(STEP8));
    }
    if (VL >= 8) {
      a20 = a20.add(a20.rearrange(STEP4));
    }
    a20 = a20.add(a20.rearrange(STEP2));
    a20 = a20.add(a20.rearrange(STEP1));
    float s20 = a20.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a21 = a21.add(a21.rearrange(sh));
    }
    if (VL >= 16) {
      a21 = a21.add(a21.rearrange(STEP8));
    }
    if (VL >= 8) {
      a21 = a21.add(a21.rearrange(STEP4));
    }
    a21 = a21.add(a21.rearrange(STEP2));
    a21 = a21.add(a21.rearrange(STEP1));
    float s21 = a21.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a22 = a22.add(a22.rearrange(sh));
    }
    if (VL >= 16) {
      a22 = a22.add(a22.rearrange(STEP8));
    }
    if (VL >= 8) {
      a22 = a22.add(a22.rearrange(STEP4));
    }
    a22 = a22.add(a22.rearrange(STEP2));
    a22 = a22.add(a22.rearrange(STEP1));
    float s22 = a22.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a23 = a23.add(a23.rearrange(sh));
    }
    if (VL >= 16) {
      a23 = a23.add(a23.rearrange(STEP8));
    }
    if (VL >= 8) {
      a23 = a23.add(a23.rearrange(STEP4));
    }
    a23 = a23.add(a23.rearrange(STEP2));
    a23 = a23.add(a23.rearrange(STEP1));
    float s23 = a23.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a30 = a30.add(a30.rearrange(sh));
    }
    if (VL >= 16) {
      a30 = a30.add(a30.rearrange(STEP8));
    }
    if (VL >= 8) {
      a30 = a30.add(a30.rearrange(STEP4));
    }
    a30 = a30.add(a30.rearrange(STEP2));
    a30 = a30.add(a30.rearrange(STEP1));
    float s30 = a30.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a31 = a31.add(a31.rearrange(sh));
    }
    if (VL >= 16) {
      a31 = a31.add(a31.rearrange(STEP8));
    }
    if (VL >= 8) {
      a31 = a31.add(a31.rearrange(STEP4));
    }
    a31 = a31.add(a31.rearrange(STEP2));
    a31 = a31.add(a31.rearrange(STEP1));
    float s31 = a31.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a32 = a32.add(a32.rearrange(sh));
    }
    if (VL >= 16) {
      a32 = a32.add(a32.rearrange(STEP8));
    }
    if (VL >= 8) {
      a32 = a32.add(a32.rearrange(STEP4));
    }
    a32 = a32.add(a32.rearrange(STEP2));
    a32 = a32.add(a32.rearrange(STEP1));
    float s32 = a32.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a33 = a33.add(a33.rearrange(sh));
    }
    if (VL >= 16) {
      a33 = a33.add(a33.rearrange(STEP8));
    }
    if (VL >= 8) {
      a33 = a33.add(a33.rearrange(STEP4));
    }
    a33 = a33.add(a33.rearrange(STEP2));
    a33 = a33.add(a33.rearrange(STEP1));
    float s33 = a33.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float u1 = Float.intBitsToFloat(w.get(I16_LE, w1 + 2L * c) << 16);
      float u2 = Float.intBitsToFloat(w.get(I16_LE, w2 + 2L * c) << 16);
      float u3 = Float.intBitsToFloat(w.get(I16_LE, w3 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      s10 = Math.fma(u1, q0, s10);
      s20 = Math.fma(u2, q0, s20);
      s30 = Math.fma(u3, q0, s30);
      float q1 = x[x1 + c];
      s01 = Math.fma(u0, q1, s01);
      s11 = Math.fma(u1, q1, s11);
      s21 = Math.fma(u2, q1, s21);
      s31 = Math.fma(u3, q1, s31);
      float q2 = x[x2 + c];
      s02 = Math.fma(u0, q2, s02);
      s12 = Math.fma(u1, q2, s12);
      s22 = Math.fma(u2, q2, s22);
      s32 = Math.fma(u3, q2, s32);
      float q3 = x[x3 + c];
      s03 = Math.fma(u0, q3, s03);
      s13 = Math.fma(u1, q3, s13);
      s23 = Math.fma(u2, q3, s23);
      s33 = Math.fma(u3, q3, s33);
    }
    out[oo + 0 * ostride + 0 * gap] = s00;
    out[oo + 0 * ostride + 1 * gap] = s10;
    out[oo + 0 * ostride + 2 * gap] = s20;
    out[oo + 0 * ostride + 3 * gap] = s30;
    out[oo + 1 * ostride + 0 * gap] = s01;
    out[oo + 1 * ostride + 1 * gap] = s11;
    out[oo + 1 * ostride + 2 * gap] = s21;
    out[oo + 1 * ostride + 3 * gap] = s31;
    out[oo + 2 * ostride + 0 * gap] = s02;
    out[oo + 2 * ostride + 1 * gap] = s12;
    out[oo + 2 * ostride + 2 * gap] = s22;
    out[oo + 2 * ostride + 3 * gap] = s32;
    out[oo + 3 * ostride + 0 * gap] = s03;
    out[oo + 3 * ostride + 1 * gap] = s13;
    out[oo + 3 * ostride + 2 * gap] = s23;
    out[oo + 3 * ostride + 3 * gap] = s33;
  }

  /** 1 weight row(s) x 4 input row(s), BF16: out[oo + t*ostride + k] = dot(w row k, x row t). */
  static void bf16Rows1x4(MemorySegment w, long row, long rowBytes, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * rowBytes;
    int x0 = xo + 0 * cols;
    int x1 = xo + 1 * cols;
    int x2 = xo + 2 * cols;
    int x3 = xo + 3 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a01 = FloatVector.zero(F);
    FloatVector a02 = FloatVector.zero(F);
    FloatVector a03 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      FloatVector y1 = FloatVector.fromArray(F, x, x1 + c);
      a01 = e0.fma(y1, a01);
      FloatVector y2 = FloatVector.fromArray(F, x, x2 + c);
      a02 = e0.fma(y2, a02);
      FloatVector y3 = FloatVector.fromArray(F, x, x3 + c);
      a03 = e0.fma(y3, a03);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
      FloatVector z1 = FloatVector.fromArray(F, x, x1 + c + VL);
      a01 = o0.fma(z1, a01);
      FloatVector z2 = FloatVector.fromArray(F, x, x2 + c + VL);
      a02 = o0.fma(z2, a02);
      FloatVector z3 = FloatVector.fromArray(F, x, x3 + c + VL);
      a03 = o0.fma(z3, a03);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a01 = a01.add(a01.rearrange(sh));
    }
    if (VL >= 16) {
      a01 = a01.add(a01.rearrange(STEP8));
    }
    if (VL >= 8) {
      a01 = a01.add(a01.rearrange(STEP4));
    }
    a01 = a01.add(a01.rearrange(STEP2));
    a01 = a01.add(a01.rearrange(STEP1));
    float s01 = a01.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a02 = a02.add(a02.rearrange(sh));
    }
    if (VL >= 16) {
      a02 = a02.add(a02.rearrange(STEP8));
    }
    if (VL >= 8) {
      a02 = a02.add(a02.rearrange(STEP4));
    }
    a02 = a02.add(a02.rearrange(STEP2));
    a02 = a02.add(a02.rearrange(STEP1));
    float s02 = a02.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a03 = a03.add(a03.rearrange(sh));
    }
    if (VL >= 16) {
      a03 = a03.add(a03.rearrange(STEP8));
    }
    if (VL >= 8) {
      a03 = a03.add(a03.rearrange(STEP4));
    }
    a03 = a03.add(a03.rearrange(STEP2));
    a03 = a03.add(a03.rearrange(STEP1));
    float s03 = a03.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      float q1 = x[x1 + c];
      s01 = Math.fma(u0, q1, s01);
      float q2 = x[x2 + c];
      s02 = Math.fma(u0, q2, s02);
      float q3 = x[x3 + c];
      s03 = Math.fma(u0, q3, s03);
    }
    out[oo + 0 * ostride + 0] = s00;
    out[oo + 1 * ostride + 0] = s01;
    out[oo + 2 * ostride + 0] = s02;
    out[oo + 3 * ostride + 0] = s03;
  }



  /** 4 weight row(s) x 2 input row(s), BF16: out[oo + t*ostride + k*gap] = dot(w row k*gap, x row t). */
  static void bf16Rows4x2(MemorySegment w, long row, long rowBytes, int gap, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * gap * rowBytes;
    long w1 = row + 1L * gap * rowBytes;
    long w2 = row + 2L * gap * rowBytes;
    long w3 = row + 3L * gap * rowBytes;
    int x0 = xo + 0 * cols;
    int x1 = xo + 1 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a01 = FloatVector.zero(F);
    FloatVector a10 = FloatVector.zero(F);
    FloatVector a11 = FloatVector.zero(F);
    FloatVector a20 = FloatVector.zero(F);
    FloatVector a21 = FloatVector.zero(F);
    FloatVector a30 = FloatVector.zero(F);
    FloatVector a31 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      IntVector p1 = IntVector.fromMemorySegment(I, w, w1 + 2L * c, LE);
      IntVector p2 = IntVector.fromMemorySegment(I, w, w2 + 2L * c, LE);
      IntVector p3 = IntVector.fromMemorySegment(I, w, w3 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector e3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      a10 = e1.fma(y0, a10);
      a20 = e2.fma(y0, a20);
      a30 = e3.fma(y0, a30);
      FloatVector y1 = FloatVector.fromArray(F, x, x1 + c);
      a01 = e0.fma(y1, a01);
      a11 = e1.fma(y1, a11);
      a21 = e2.fma(y1, a21);
      a31 = e3.fma(y1, a31);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o1 = p1.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o2 = p2.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector o3 = p3.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
      a10 = o1.fma(z0, a10);
      a20 = o2.fma(z0, a20);
      a30 = o3.fma(z0, a30);
      FloatVector z1 = FloatVector.fromArray(F, x, x1 + c + VL);
      a01 = o0.fma(z1, a01);
      a11 = o1.fma(z1, a11);
      a21 = o2.fma(z1, a21);
      a31 = o3.fma(z1, a31);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a01 = a01.add(a01.rearrange(sh));
    }
    if (VL >= 16) {
      a01 = a01.add(a01.rearrange(STEP8));
    }
    if (VL >= 8) {
      a01 = a01.add(a01.rearrange(STEP4));
    }
    a01 = a01.add(a01.rearrange(STEP2));
    a01 = a01.add(a01.rearrange(STEP1));
    float s01 = a01.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a10 = a10.add(a10.rearrange(sh));
    }
    if (VL >= 16) {
      a10 = a10.add(a10.rearrange(STEP8));
    }
    if (VL >= 8) {
      a10 = a10.add(a10.rearrange(STEP4));
    }
    a10 = a10.add(a10.rearrange(STEP2));
    a10 = a10.add(a10.rearrange(STEP1));
    float s10 = a10.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a11 = a11.add(a11.rearrange(sh));
    }
    if (VL >= 16) {
      a11 = a11.add(a11.rearrange(STEP8));
    }
    if (VL >= 8) {
      a11 = a11.add(a11.rearrange(STEP4));
    }
    a11 = a11.add(a11.rearrange(STEP2));
    a11 = a11.add(a11.rearrange(STEP1));
    float s11 = a11.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a20 = a20.add(a20.rearrange(sh));
    }
    if (VL >= 16) {
      a20 = a20.add(a20.rearrange(STEP8));
    }
    if (VL >= 8) {
      a20 = a20.add(a20.rearrange(STEP4));
    }
    a20 = a20.add(a20.rearrange(STEP2));
    a20 = a20.add(a20.rearrange(STEP1));
    float s20 = a20.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a21 = a21.add(a21.rearrange(sh));
    }
    if (VL >= 16) {
      a21 = a21.add(a21.rearrange(STEP8));
    }
    if (VL >= 8) {
      a21 = a21.add(a21.rearrange(STEP4));
    }
    a21 = a21.add(a21.rearrange(STEP2));
    a21 = a21.add(a21.rearrange(STEP1));
    float s21 = a21.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a30 = a30.add(a30.rearrange(sh));
    }
    if (VL >= 16) {
      a30 = a30.add(a30.rearrange(STEP8));
    }
    if (VL >= 8) {
      a30 = a30.add(a30.rearrange(STEP4));
    }
    a30 = a30.add(a30.rearrange(STEP2));
    a30 = a30.add(a30.rearrange(STEP1));
    float s30 = a30.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a31 = a31.add(a31.rearrange(sh));
    }
    if (VL >= 16) {
      a31 = a31.add(a31.rearrange(STEP8));
    }
    if (VL >= 8) {
      a31 = a31.add(a31.rearrange(STEP4));
    }
    a31 = a31.add(a31.rearrange(STEP2));
    a31 = a31.add(a31.rearrange(STEP1));
    float s31 = a31.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float u1 = Float.intBitsToFloat(w.get(I16_LE, w1 + 2L * c) << 16);
      float u2 = Float.intBitsToFloat(w.get(I16_LE, w2 + 2L * c) << 16);
      float u3 = Float.intBitsToFloat(w.get(I16_LE, w3 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      s10 = Math.fma(u1, q0, s10);
      s20 = Math.fma(u2, q0, s20);
      s30 = Math.fma(u3, q0, s30);
      float q1 = x[x1 + c];
      s01 = Math.fma(u0, q1, s01);
      s11 = Math.fma(u1, q1, s11);
      s21 = Math.fma(u2, q1, s21);
      s31 = Math.fma(u3, q1, s31);
    }
    out[oo + 0 * ostride + 0 * gap] = s00;
    out[oo + 0 * ostride + 1 * gap] = s10;
    out[oo + 0 * ostride + 2 * gap] = s20;
    out[oo + 0 * ostride + 3 * gap] = s30;
    out[oo + 1 * ostride + 0 * gap] = s01;
    out[oo + 1 * ostride + 1 * gap] = s11;
    out[oo + 1 * ostride + 2 * gap] = s21;
    out[oo + 1 * ostride + 3 * gap] = s31;
  }

  /** 1 weight row(s) x 2 input row(s), BF16: out[oo + t*ostride + k] = dot(w row k, x row t). */
  static void bf16Rows1x2(MemorySegment w, long row, long rowBytes, float[] x, int xo, int cols,
      float[] out, int oo, int ostride) {
    long w0 = row + 0L * rowBytes;
    int x0 = xo + 0 * cols;
    int x1 = xo + 1 * cols;
    FloatVector a00 = FloatVector.zero(F);
    FloatVector a01 = FloatVector.zero(F);
    int c = 0;
    int bound = cols - cols % (2 * VL);
    for (; c < bound; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + 2L * c, LE);
      FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector y0 = FloatVector.fromArray(F, x, x0 + c);
      a00 = e0.fma(y0, a00);
      FloatVector y1 = FloatVector.fromArray(F, x, x1 + c);
      a01 = e0.fma(y1, a01);
      FloatVector o0 = p0.and(0xFFFF0000).reinterpretAsFloats();
      FloatVector z0 = FloatVector.fromArray(F, x, x0 + c + VL);
      a00 = o0.fma(z0, a00);
      FloatVector z1 = FloatVector.fromArray(F, x, x1 + c + VL);
      a01 = o0.fma(z1, a01);
    }
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a00 = a00.add(a00.rearrange(sh));
    }
    if (VL >= 16) {
      a00 = a00.add(a00.rearrange(STEP8));
    }
    if (VL >= 8) {
      a00 = a00.add(a00.rearrange(STEP4));
    }
    a00 = a00.add(a00.rearrange(STEP2));
    a00 = a00.add(a00.rearrange(STEP1));
    float s00 = a00.lane(0);
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      a01 = a01.add(a01.rearrange(sh));
    }
    if (VL >= 16) {
      a01 = a01.add(a01.rearrange(STEP8));
    }
    if (VL >= 8) {
      a01 = a01.add(a01.rearrange(STEP4));
    }
    a01 = a01.add(a01.rearrange(STEP2));
    a01 = a01.add(a01.rearrange(STEP1));
    float s01 = a01.lane(0);
    for (; c < cols; c++) {
      float u0 = Float.intBitsToFloat(w.get(I16_LE, w0 + 2L * c) << 16);
      float q0 = x[x0 + c];
      s00 = Math.fma(u0, q0, s00);
      float q1 = x[x1 + c];
      s01 = Math.fma(u0, q1, s01);
    }
    out[oo + 0 * ostride + 0] = s00;
    out[oo + 1 * ostride + 0] = s01;
  }

  /**
   * Sum of the lanes in a fixed order (unlike {@code reduceLanes(ADD)}, whose order may differ
   * between the interpreter and C2): a butterfly of lane-wise adds, lane i plus lane i ^ VL/2,
   * then i ^ VL/4, ..., down to lane 0. Only IEEE lane-wise adds, so every JIT tier agrees.
   */
  static float reduce(FloatVector v) {
    for (VectorShuffle<Float> sh : BIG_STEPS) {
      v = v.add(v.rearrange(sh));
    }
    if (VL >= 16) {
      v = v.add(v.rearrange(STEP8));
    }
    if (VL >= 8) {
      v = v.add(v.rearrange(STEP4));
    }
    v = v.add(v.rearrange(STEP2));
    v = v.add(v.rearrange(STEP1));
    float s = v.lane(0);
    return s;
  }

  private static VectorShuffle<Float> swap(int step) {
    return step == 0 || step >= VL ? null : VectorShuffle.fromOp(F, i -> i ^ step);
  }

  /** Butterfly steps of 16 lanes and more (none up to 512-bit vectors), largest first. */
  @SuppressWarnings("unchecked")
  private static VectorShuffle<Float>[] bigSteps() {
    int n = Math.max(0, Integer.numberOfTrailingZeros(VL) - 4);
    VectorShuffle<Float>[] result = new VectorShuffle[n];
    for (int k = 0; k < n; k++) {
      result[k] = swap(VL >> (k + 1));
    }
    return result;
  }
}
