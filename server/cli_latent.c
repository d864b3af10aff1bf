/* cli_latent.c — pixel or latent space for the subcommands that sample a DiT checkpoint
 * (`difftune sample`, `difftune fid`): the --vae check they share. */
#include <stdio.h>

#include "cli.h"
#include "safetensors.h"
#include "vae.h"

int cli_latent_pixels(const char *cmd, const char *vae_path, int in_channels, int image_size,
                      int *pixels) {
    *pixels = 0;
    if (!vae_path) {
        if (in_channels == 1 || in_channels == 3) return 0;
        fprintf(stderr, "%s: the checkpoint takes %d-channel inputs: a latent DiT, whose samples "
                "need --vae FILE (the SD VAE it was trained with) to become images\n", cmd,
                in_channels);
        return -1;
    }
    st_file vf = {0};
    vae_config vc;
    char why[768];
    int bad = safetensors_open(&vf, vae_path, why, sizeof why) ||
              vae_read_config(&vf, &vc, why, sizeof why);
    safetensors_close(&vf);
    if (bad) {
        fprintf(stderr, "%s: --vae %s: %s\n", cmd, vae_path, why);
        return -1;
    }
    if (vc.latent_channels != in_channels) {
        fprintf(stderr, "%s: --vae %s makes %d-channel latents but the checkpoint takes %d "
                "channels\n", cmd, vae_path, vc.latent_channels, in_channels);
        return -1;
    }
    *pixels = image_size * vc.downsample;
    return 0;
}
