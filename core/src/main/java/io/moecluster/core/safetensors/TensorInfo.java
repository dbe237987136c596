package io.moecluster.core.safetensors;

import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Objects;

/**
 * Where one tensor of a checkpoint lives: its dtype and shape, the file holding it, and the
 * absolute byte range ({@code fileOffset}, {@code byteSize}) of its data in that file.
 *
 * <p>The shape is copied in and out, so an instance is immutable.
 */
public record TensorInfo(
    String name, DType dtype, long[] shape, Path file, long fileOffset, long byteSize) {

  public TensorInfo {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(dtype, "dtype");
    Objects.requireNonNull(file, "file");
    shape = shape.clone();
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  /** The rank (number of dimensions); 0 for a scalar. */
  public int rank() {
    return shape.length;
  }

  /** The product of the dimensions (1 for a scalar). */
  public long elementCount() {
    return Shapes.elementCount(shape);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TensorInfo t
        && name.equals(t.name)
        && dtype == t.dtype
        && Arrays.equals(shape, t.shape)
        && file.equals(t.file)
        && fileOffset == t.fileOffset
        && byteSize == t.byteSize;
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, dtype, Arrays.hashCode(shape), file, fileOffset, byteSize);
  }

  @Override
  public String toString() {
    return name
        + " "
        + dtype
        + Shapes.format(shape)
        + " @"
        + file.getFileName()
        + "+"
        + fileOffset
        + " ("
        + byteSize
        + " bytes)";
  }
}
