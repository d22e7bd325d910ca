"""Gaussian diffusion: schedules, the forward process and loss, samplers and guidance."""

from selfconsume.diffusion.gaussian_diffusion import q_sample
from selfconsume.diffusion.gaussian_diffusion import training_loss
from selfconsume.diffusion.sampling import guided
from selfconsume.diffusion.sampling import sample
from selfconsume.diffusion.schedules import Schedule
from selfconsume.diffusion.schedules import make_schedule
from selfconsume.diffusion.schedules import respace
