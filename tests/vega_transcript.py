"""A literal transcription of vega's CycleSR update code, for tests/test_vega_equivalence.py only.

Transcribed from vega (huawei-noah/vega):
- vega/networks/pytorch/cyclesrbodys/trans_model.py: TransModel.__init__ (losses, optimizers, buffers),
  TransModel.cal_adversial_loss, TransModel.update_D, TransModel.update_learning_rate, TransModel.adjust_lr,
  ShuffleBuffer.choose;
- vega/networks/pytorch/cyclesrbodys/cyclesr_net.py: CycleSRModel.__init__ (SR optimizer, weights),
  CycleSRModel.forward, update_G, update_SR, optimize_SR, optimize_transmodel, optimize_CycleSR;
- vega/networks/pytorch/cyclesrbodys/networks.py: requires_grad.

Framework plumbing replaced by plain torch: no `.cuda()`/`.npu()`, no Config object, no logging, no DataParallel.
The networks are handed in (the project's modules with copied weights), since this file checks the update code,
not the constructors. `ShuffleBuffer` takes its random source as an argument (default: python's `random`, as in
vega), so a test can make it draw exactly the numbers the project's pool draws.
"""

from __future__ import annotations

import itertools
import random

import torch


def requires_grad(nets, requires_grads=False):  # networks.py: requires_grad
    for net in nets:
        for param in net.parameters():
            param.requires_grad = requires_grads


class ShuffleBuffer:  # trans_model.py: ShuffleBuffer
    def __init__(self, buffer_size, rng=random):
        self.buffer_size = buffer_size
        self.num_imgs = 0
        self.images = []
        self.rng = rng  # vega: the module-level `random`

    def choose(self, images, prob=0.5):
        return_images = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.buffer_size:
                self.images.append(image)
                return_images.append(image)
                self.num_imgs += 1
            else:
                p = self.rng.uniform(0, 1)
                if p < prob:
                    idx = self.rng.randint(0, self.buffer_size - 1)
                    stored_image = self.images[idx].clone()
                    self.images[idx] = image
                    return_images.append(stored_image)
                else:
                    return_images.append(image)
        return_images = torch.cat(return_images, 0)
        return return_images


class VegaCycleSR:
    """TransModel + CycleSRModel, update code only."""

    def __init__(self, netG, netF, netD_X, netD_Y, netSR, cfg, rng_X=random, rng_Y=random):
        # trans_model.py: TransModel.__init__
        self.netG, self.netF, self.netD_X, self.netD_Y = netG, netF, netD_X, netD_Y
        self.cyc_lr = cfg["cyc_lr"]
        self.lambda_idt = cfg["lambda_identity"]
        self.lambda_cycle = cfg["lambda_cycle"]
        self.criterionGAN = torch.nn.MSELoss()
        self.criterionCycle = torch.nn.L1Loss()
        self.criterionIdt = torch.nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(
            itertools.chain(self.netG.parameters(), self.netF.parameters()), lr=self.cyc_lr, betas=(0.5, 0.999)
        )
        self.optimizer_D_X = torch.optim.Adam(self.netD_X.parameters(), lr=self.cyc_lr, betas=(0.5, 0.999))
        self.optimizer_D_Y = torch.optim.Adam(self.netD_Y.parameters(), lr=self.cyc_lr, betas=(0.5, 0.999))
        self.fake_X_buffer = ShuffleBuffer(cfg["buffer_size"], rng_X)
        self.fake_Y_buffer = ShuffleBuffer(cfg["buffer_size"], rng_Y)
        # cyclesr_net.py: CycleSRModel.__init__
        self.max_norm = cfg["grad_clip"]
        self.SR_lam = cfg["SR_lam"]
        self.cycleSR_lam = cfg["cycleSR_lam"]
        self.netSR = netSR
        self.criterionSR = torch.nn.MSELoss()
        self.optimizer_SR = torch.optim.Adam(self.netSR.parameters(), lr=cfg["SR_lr"], betas=(0.5, 0.999))

    # ---------------------------------------------------------------- cyclesr_net.py: CycleSRModel.forward
    def forward(self):
        self.fake_Y = self.netG(self.real_X)  # G(X)
        self.rec_X = self.netF(self.fake_Y)  # F(G(X))
        self.fake_X = self.netF(self.real_Y)  # F(Y)
        self.rec_Y = self.netG(self.fake_X)  # G(F(Y))

        self.G_SR = self.netSR(self.fake_Y)  # SR(G(X))

    # ---------------------------------------------------------------- trans_model.py: TransModel.cal_adversial_loss
    def cal_adversial_loss(self, netD, real, fake):
        pred_real = netD(real)
        # vega's labels are float32 like its networks; these tests run in float64, where a float32 label breaks the
        # MSE backward on torch 2.11 (2.13 promotes it), so the labels take the prediction's dtype: same values
        self.real_label = torch.tensor(1.0, dtype=pred_real.dtype).expand_as(pred_real)
        loss_D_real = self.criterionGAN(pred_real, self.real_label)
        pred_fake = netD(fake.detach())
        self.fake_label = torch.tensor(0.0, dtype=pred_fake.dtype).expand_as(pred_fake)
        loss_D_fake = self.criterionGAN(pred_fake, self.fake_label)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    # ---------------------------------------------------------------- trans_model.py: TransModel.update_D
    def update_D(self):
        fake_X = self.fake_X_buffer.choose(self.fake_X)
        self.loss_D_X = self.cal_adversial_loss(self.netD_X, self.real_X, fake_X)
        fake_Y = self.fake_Y_buffer.choose(self.fake_Y)
        self.loss_D_Y = self.cal_adversial_loss(self.netD_Y, self.real_Y, fake_Y)

    # ---------------------------------------------------------------- cyclesr_net.py: CycleSRModel.update_G
    def update_G(self, lam):
        self.loss_idt_Y = self.criterionIdt(self.netG(self.real_Y), self.real_Y) * self.lambda_cycle * self.lambda_idt
        self.loss_idt_X = self.criterionIdt(self.netF(self.real_X), self.real_X) * self.lambda_cycle * self.lambda_idt

        total_idt = self.loss_idt_Y + self.loss_idt_X
        self.loss_G = self.criterionGAN(self.netD_Y(self.fake_Y), self.real_label)
        self.loss_F = self.criterionGAN(self.netD_X(self.fake_X), self.real_label)
        self.loss_rec_X = self.criterionCycle(self.rec_X, self.real_X) * self.lambda_cycle
        self.loss_rec_Y = self.criterionCycle(self.rec_Y, self.real_Y) * self.lambda_cycle
        self.loss_total = self.loss_G + self.loss_F + self.loss_rec_Y + self.loss_rec_X + total_idt

        self.loss_G_SR = self.criterionSR(self.G_SR, self.HR) * lam
        self.loss_total = self.loss_total + self.loss_G_SR
        self.loss_total.backward()

    # ---------------------------------------------------------------- cyclesr_net.py: CycleSRModel.update_SR
    def update_SR(self, LR, HR, lam):
        self.LR = LR.data
        self.HR = HR.data

        self.SR = self.netSR(self.LR)
        self.loss_SR = lam * self.criterionSR(self.SR, self.HR)
        self.loss_SR.backward()

    # ---------------------------------------------------------------- cyclesr_net.py: CycleSRModel.optimize_SR
    def optimize_SR(self, LR, HR, lam):
        requires_grad([self.netSR], True)
        self.optimizer_SR.zero_grad()

        self.update_SR(LR, HR, lam)

        torch.nn.utils.clip_grad_norm_(self.netSR.parameters(), max_norm=self.max_norm)

        self.optimizer_SR.step()

    # ---------------------------------------------------------------- cyclesr_net.py: CycleSRModel.optimize_transmodel
    def optimize_transmodel(self, lam):
        self.forward()
        requires_grad([self.netD_X, self.netD_Y], True)
        self.optimizer_D_X.zero_grad()
        self.optimizer_D_Y.zero_grad()
        self.update_D()
        torch.nn.utils.clip_grad_norm_(self.netD_X.parameters(), max_norm=self.max_norm)
        torch.nn.utils.clip_grad_norm_(self.netD_Y.parameters(), max_norm=self.max_norm)
        self.optimizer_D_X.step()
        self.optimizer_D_Y.step()
        requires_grad([self.netSR], False)
        requires_grad([self.netD_X, self.netD_Y], False)
        self.optimizer_G.zero_grad()
        self.update_G(lam)
        torch.nn.utils.clip_grad_norm_(self.netG.parameters(), max_norm=self.max_norm)
        torch.nn.utils.clip_grad_norm_(self.netF.parameters(), max_norm=self.max_norm)
        self.optimizer_G.step()

    # ---------------------------------------------------------------- cyclesr_net.py: CycleSRModel.optimize_CycleSR
    def optimize_CycleSR(self, input, epoch):
        self.real_X = input["X"]
        self.real_Y = input["Y"]
        self.HR = input["HR"]
        self.batch_size = self.real_X.shape[0]
        if epoch < 6:
            self.optimize_transmodel(0)
        elif 6 <= epoch < 7:
            self.optimize_SR(self.real_X, self.HR, 1)
        else:
            self.optimize_transmodel(self.cycleSR_lam)
            self.optimize_SR(self.fake_Y, self.HR, self.SR_lam)

    # ---------------------------------------------------------------- trans_model.py: TransModel.update_learning_rate
    def update_learning_rate(self, epoch, cyc_lr, SR_lr, n_epoch, n_epoch_decay):
        tmp_cyc_lr = cyc_lr - max(0, epoch - n_epoch) * cyc_lr / n_epoch_decay
        tmp_SR_lr = SR_lr - max(0, epoch - n_epoch) * SR_lr / n_epoch_decay
        if epoch < 6:
            self.adjust_lr("G", self.optimizer_G, tmp_cyc_lr)
            self.adjust_lr("D_X", self.optimizer_D_X, tmp_cyc_lr)
            self.adjust_lr("D_Y", self.optimizer_D_Y, tmp_cyc_lr)
            self.adjust_lr("SR", self.optimizer_SR, 0)
        elif epoch < 7:
            self.adjust_lr("G", self.optimizer_G, 0)
            self.adjust_lr("D_X", self.optimizer_D_X, 0)
            self.adjust_lr("D_Y", self.optimizer_D_Y, 0)
            self.adjust_lr("SR", self.optimizer_SR, tmp_SR_lr)
        else:
            self.adjust_lr("G", self.optimizer_G, tmp_cyc_lr)
            self.adjust_lr("D_X", self.optimizer_D_X, tmp_cyc_lr)
            self.adjust_lr("D_Y", self.optimizer_D_Y, tmp_cyc_lr)
            self.adjust_lr("SR", self.optimizer_SR, tmp_SR_lr)

    # ---------------------------------------------------------------- trans_model.py: TransModel.adjust_lr
    def adjust_lr(self, name, optimizer, lr):
        for p in optimizer.param_groups:
            p["lr"] = lr
