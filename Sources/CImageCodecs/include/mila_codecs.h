// JPEG and PNG decoding to 8-bit RGB through libjpeg(-turbo) and libpng, and PNG encoding. libjpeg and libpng
// report errors with longjmp, which must not cross Swift frames, so the setjmp handlers live
// here and errors come back as a message.
#ifndef MILA_CODECS_H
#define MILA_CODECS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *pixels;     // width * height * 3 bytes, RGB, row-major; free with mila_image_free
    int width;
    int height;
    int orientation;     // EXIF orientation 1..8 (1 when absent)
    char error[200];     // set when pixels is NULL
} mila_image;

// Decodes a JPEG (baseline or progressive; gray, YCbCr or RGB) to RGB. An image of more than
// max_pixels pixels is refused from its header, before any pixel or coefficient buffer exists.
mila_image mila_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels);
// Decodes a PNG (1-16 bit; gray, gray+alpha, RGB, RGBA, palette) to 8-bit RGB: 16-bit samples
// keep their high byte and alpha is dropped, as PIL's convert("RGB") does. Refuses more than
// max_pixels pixels from the header, as the JPEG decoder does.
mila_image mila_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels);
void mila_image_free(mila_image *image);

typedef struct {
    uint8_t *bytes;      // the encoded file; free with mila_encoded_free
    size_t size;
    char error[200];     // set when bytes is NULL
} mila_encoded;

// Encodes width * height * 3 bytes of RGB as an 8-bit RGB PNG in memory.
mila_encoded mila_encode_png(const uint8_t *rgb, int width, int height);
// Encodes width * height palette indices (each < count) as an 8-bit palette PNG whose PLTE holds
// `count` (1..256) r, g, b triples: a label map that viewers show in the classes' colours.
mila_encoded mila_encode_png_palette(const uint8_t *indices, int width, int height, const uint8_t *palette, int count);
void mila_encoded_free(mila_encoded *encoded);

#endif
