package io.moecluster.core.safetensors;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Builds safetensors files byte by byte, to feed the reader headers the writer would never make.
 */
final class RawFiles {
  private RawFiles() {}

  /** {@code header} as given (no padding), then {@code data}. */
  static Path write(Path file, String header, byte[] data) throws IOException {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    return write(file, h.length, h, data);
  }

  /** {@code header} as given with zero data bytes. */
  static Path write(Path file, String header, int dataBytes) throws IOException {
    return write(file, header, new byte[dataBytes]);
  }

  /** A declared header length that may lie about the real one. */
  static Path write(Path file, long declaredLength, byte[] header, byte[] data) throws IOException {
    ByteBuffer b =
        ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(declaredLength).put(header).put(data);
    Files.createDirectories(file.getParent());
    Files.write(file, b.array());
    return file;
  }

  /** Little-endian F32 bytes of {@code values}. */
  static byte[] f32(float... values) {
    ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : values) {
      b.putFloat(v);
    }
    return b.array();
  }
}
