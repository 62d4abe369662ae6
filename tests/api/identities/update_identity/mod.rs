mod renaming;
mod status_200;
mod status_400;
mod status_401;
mod status_403;
mod status_404;
