package io.moecluster.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.tensor.Matrix;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Offsets past 2 GiB, on a sparse file so the test writes only a few bytes. */
class SafeTensorsLargeFileTest {
  @TempDir Path dir;

  @Test
  void tensorPastTwoGibibytesIsReadCorrectly() throws IOException {
    long begin = (1L << 31) + 200_000_000L; // ~2.2 GB into the data section
    float[] values = {1f, -2.5f, 3.25f, 1e-3f, 42f, -0f};
    long end = begin + values.length * 4L;
    String json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"far\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":["
            + begin
            + ","
            + end
            + "]}}";
    byte[] header = json.getBytes(StandardCharsets.UTF_8);
    long dataStart = 8 + header.length;
    Path file = dir.resolve("big.safetensors");
    try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
      raf.setLength(dataStart + end); // sparse: no blocks written for the hole
      ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length);
      raf.write(b.array());
      raf.write(header);
      raf.seek(dataStart + begin);
      raf.write(RawFiles.f32(values));
    }
    try {
      assertTrue(Files.size(file) > (1L << 31));
      try (SafeTensors st = SafeTensors.open(file)) {
        assertEquals(Files.size(file), st.totalBytes());
        TensorInfo info = st.info("far");
        assertEquals(dataStart + begin, info.fileOffset());
        assertArrayEquals(values, st.floats("far", 2, 3));
        Matrix m = st.matrix("far", 2, 3);
        assertEquals(3.25f, m.get(0, 2));
        assertEquals(42f, m.get(1, 1));
      }
    } finally {
      Files.deleteIfExists(file);
    }
  }
}
