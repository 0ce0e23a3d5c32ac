// talk widget: being written
