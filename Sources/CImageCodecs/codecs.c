#include "mila_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

// ---------------------------------------------------------------- JPEG

struct jpeg_failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr info) {
    struct jpeg_failure *failure = (struct jpeg_failure *)info->err;
    (*info->err->format_message)(info, failure->message);
    longjmp(failure->jump, 1);
}

static void jpeg_quiet(j_common_ptr info, int level) { (void)info; (void)level; }

// EXIF orientation from an APP1 marker: "Exif\0\0", a TIFF header, IFD0 tag 0x0112.
static int exif_orientation(const uint8_t *p, unsigned length) {
    if (length < 14 || memcmp(p, "Exif\0\0", 6) != 0) return 1;
    p += 6; length -= 6;
    int little = p[0] == 'I';
    #define U16(q) (little ? (unsigned)((q)[0] | (q)[1] << 8) : (unsigned)((q)[0] << 8 | (q)[1]))
    #define U32(q) (little ? (unsigned)((q)[0] | (q)[1] << 8 | (q)[2] << 16 | (unsigned)(q)[3] << 24) \
                           : (unsigned)((unsigned)(q)[0] << 24 | (q)[1] << 16 | (q)[2] << 8 | (q)[3]))
    // Offsets are 32-bit values from the file: compare in 64 bits so none can wrap around.
    uint64_t ifd = U32(p + 4);
    if (ifd + 2 > length) return 1;
    unsigned count = U16(p + ifd);
    for (unsigned i = 0; i < count; i++) {
        uint64_t entry = ifd + 2 + 12 * (uint64_t)i;
        if (entry + 12 > length) break;
        if (U16(p + entry) == 0x0112) {
            unsigned value = U16(p + entry + 8);
            return value >= 1 && value <= 8 ? (int)value : 1;
        }
    }
    #undef U16
    #undef U32
    return 1;
}

mila_image mila_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels) {
    mila_image image = {0};
    image.orientation = 1;
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_fail;
    failure.manager.emit_message = jpeg_quiet;
    uint8_t *volatile pixels = NULL;
    if (setjmp(failure.jump)) {
        snprintf(image.error, sizeof image.error, "corrupt JPEG: %s", failure.message);
        jpeg_destroy_decompress(&info);
        free(pixels);
        image.pixels = NULL;
        return image;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_save_markers(&info, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&info, TRUE);
    for (jpeg_saved_marker_ptr m = info.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1) image.orientation = exif_orientation(m->data, m->data_length);
    }
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        snprintf(image.error, sizeof image.error, "CMYK JPEGs are not supported");
        jpeg_destroy_decompress(&info);
        return image;
    }
    if ((uint64_t)info.image_width * info.image_height > max_pixels) {
        snprintf(image.error, sizeof image.error, "%ux%u pixels is over the limit of %llu pixels (--max-pixels)",
                 info.image_width, info.image_height, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&info);
        return image;
    }
    // libjpeg's own working memory (a progressive image's coefficients) is bounded as well.
    info.mem->max_memory_to_use = 512L * 1024 * 1024;
    info.out_color_space = JCS_RGB;
    jpeg_start_decompress(&info);
    size_t stride = (size_t)info.output_width * 3;
    pixels = malloc(stride * info.output_height);
    if (!pixels) {
        snprintf(image.error, sizeof image.error, "out of memory for %ux%u pixels", info.output_width, info.output_height);
        jpeg_destroy_decompress(&info);
        return image;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = pixels + stride * info.output_scanline;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    image.width = (int)info.output_width;
    image.height = (int)info.output_height;
    jpeg_destroy_decompress(&info);
    image.pixels = pixels;
    return image;
}

// ---------------------------------------------------------------- PNG

struct png_source {
    const uint8_t *data;
    size_t size;
    size_t offset;
};

static void png_read_memory(png_structp png, png_bytep out, png_size_t count) {
    struct png_source *source = png_get_io_ptr(png);
    if (source->offset + count > source->size) png_error(png, "file is truncated");
    memcpy(out, source->data + source->offset, count);
    source->offset += count;
}

// The message buffer travels as libpng's error pointer, so concurrent decodes do not share it.
static void png_fail(png_structp png, png_const_charp message) {
    char *buffer = png_get_error_ptr(png);
    snprintf(buffer, 160, "%s", message);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp message) { (void)png; (void)message; }

mila_image mila_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels) {
    mila_image image = {0};
    image.orientation = 1;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(image.error, sizeof image.error, "not a PNG file");
        return image;
    }
    char png_message[160] = "unknown error";
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, png_message, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        snprintf(image.error, sizeof image.error, "libpng could not start");
        png_destroy_read_struct(&png, &info, NULL);
        return image;
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        snprintf(image.error, sizeof image.error, "corrupt PNG: %s", png_message);
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return image;
    }
    struct png_source source = {data, size, 0};
    png_set_read_fn(png, &source, png_read_memory);
    // libpng's own limits: no single chunk (iCCP, zTXt...) over 16 MB expanded.
    png_set_chunk_malloc_max(png, 16u * 1024 * 1024);
    png_read_info(png, info);
    if ((uint64_t)png_get_image_width(png, info) * png_get_image_height(png, info) > max_pixels) {
        snprintf(image.error, sizeof image.error, "%ux%u pixels is over the limit of %llu pixels (--max-pixels)",
                 png_get_image_width(png, info), png_get_image_height(png, info), (unsigned long long)max_pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return image;
    }
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if (depth == 16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)width * 3) {
        snprintf(image.error, sizeof image.error, "unexpected PNG row layout (%zu bytes for %u pixels)", stride, width);
        png_destroy_read_struct(&png, &info, NULL);
        return image;
    }
    pixels = malloc(stride * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) {
        snprintf(image.error, sizeof image.error, "out of memory for %ux%u pixels", width, height);
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return image;
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + stride * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    image.pixels = pixels;
    image.width = (int)width;
    image.height = (int)height;
    return image;
}

void mila_image_free(mila_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}

// ---- PNG encoding (8-bit RGB, to memory) ----

struct png_sink {
    uint8_t *data;
    size_t size, capacity;
    int failed;
};

static void png_write_memory(png_structp png, png_bytep bytes, png_size_t count) {
    struct png_sink *sink = png_get_io_ptr(png);
    if (sink->failed) return;
    if (sink->size + count > sink->capacity) {
        size_t capacity = sink->capacity ? sink->capacity : 4096;
        while (capacity < sink->size + count) capacity *= 2;
        uint8_t *grown = realloc(sink->data, capacity);
        if (!grown) {
            sink->failed = 1;
            return;
        }
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, bytes, count);
    sink->size += count;
}

static void png_flush_memory(png_structp png) { (void)png; }

// Writes rows of `row_bytes` bytes as a PNG of the given colour type; `palette` (count entries of
// r, g, b) only for PNG_COLOR_TYPE_PALETTE.
static mila_encoded encode_png(const uint8_t *pixels, int width, int height, int color_type, size_t row_bytes,
                               const uint8_t *palette, int count) {
    mila_encoded result = {0};
    if (width <= 0 || height <= 0) {
        snprintf(result.error, sizeof result.error, "image size %dx%d is empty", width, height);
        return result;
    }
    char png_message[160] = "unknown error";
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, png_message, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        snprintf(result.error, sizeof result.error, "libpng could not start");
        png_destroy_write_struct(&png, &info);
        return result;
    }
    struct png_sink sink = {0};
    png_color colors[256];
    if (setjmp(png_jmpbuf(png))) {
        snprintf(result.error, sizeof result.error, "PNG encoding failed: %s", png_message);
        png_destroy_write_struct(&png, &info);
        free(sink.data);
        return result;
    }
    png_set_write_fn(png, &sink, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        for (int i = 0; i < count; ++i) {
            colors[i].red = palette[3 * i];
            colors[i].green = palette[3 * i + 1];
            colors[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, colors, count);
    }
    png_write_info(png, info);
    for (int y = 0; y < height; ++y) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * row_bytes));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (sink.failed) {
        snprintf(result.error, sizeof result.error, "out of memory while encoding PNG");
        free(sink.data);
        return result;
    }
    result.bytes = sink.data;
    result.size = sink.size;
    return result;
}

mila_encoded mila_encode_png(const uint8_t *rgb, int width, int height) {
    return encode_png(rgb, width, height, PNG_COLOR_TYPE_RGB, (size_t)width * 3, NULL, 0);
}

mila_encoded mila_encode_png_palette(const uint8_t *indices, int width, int height, const uint8_t *palette, int count) {
    if (count < 1 || count > 256) {
        mila_encoded result = {0};
        snprintf(result.error, sizeof result.error, "a palette PNG holds 1 to 256 colours, not %d", count);
        return result;
    }
    for (size_t i = 0; width > 0 && height > 0 && i < (size_t)width * height; ++i) {
        if (indices[i] >= count) {
            mila_encoded result = {0};
            snprintf(result.error, sizeof result.error, "index %d at pixel %zu is outside the %d-colour palette", indices[i], i, count);
            return result;
        }
    }
    return encode_png(indices, width, height, PNG_COLOR_TYPE_PALETTE, (size_t)width, palette, count);
}

void mila_encoded_free(mila_encoded *encoded) {
    free(encoded->bytes);
    encoded->bytes = NULL;
    encoded->size = 0;
}
