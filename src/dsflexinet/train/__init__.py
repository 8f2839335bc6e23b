"""Training: Lightning modules and data modules for teachers and students, learning-rate schedules."""
